"""A local stand-in for Raptor's servers, on a loopback port (SPEC section 16).

One small HTTP server answers as each of Raptor's servers that cdp_bridge calls:

- the tracking host: ``GET /{account}.rsa?…`` and ``/{account}.stream?…`` (one event
  each, kept in :attr:`RaptorStandIn.events` as a dict of its query parameters);
- the CDP API: ``GET /api/v3/memberships/coid?identifierValue=…`` (a visitor's
  segments, from :attr:`~RaptorStandIn.visitor_segments`; 404 for a visitor it was not
  told about, as Raptor answers), ``GET /api/v3/audiences`` and
  ``GET /api/v3/membership/{audience id}`` (from :attr:`~RaptorStandIn.audiences`);
- the Recommendations API: ``GET /v1/{account}/{method}/{count}/{key}`` (from
  :attr:`~RaptorStandIn.recommendations`, by method; 404 for a method it has not);
- the Streaming API: ``POST /stream/{account}`` (records kept in
  :attr:`~RaptorStandIn.exports`);
- the GDPR API: ``POST /gdpr/{account}/DeleteUser`` (ids kept in
  :attr:`~RaptorStandIn.deletions`).

Calls with the wrong key are answered 401, as Raptor does, so a test also shows that the
app sends its credentials. :attr:`~RaptorStandIn.config` holds the ``CDP_*`` settings that
point an app at it. The demo serves its pages' stand-in with it, and the pytest plugin
(:mod:`cdp_bridge.testing.plugin`) hands one to each test that asks for ``cdp_raptor``.
"""

from __future__ import annotations

import hmac
import json
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from flask import Flask, request
from flask.typing import ResponseReturnValue
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

#: Made-up credentials the stand-in expects (it is local: nothing here is a secret).
ACTIVATION_ID = "stand-in-activation"
MEMBERSHIP_API_KEY = "stand-in-cdp-api-key"
RECOMMENDATIONS_API_KEY = "stand-in-recommendations-key"
GDPR_API_KEY = "stand-in-gdpr-key"

#: Answers a recommendation method from the module's query parameters (the demo's), or
#: ``None`` for a method it has not.
RecommendationsAnswer = Callable[[str, Mapping[str, str]], list[str] | None]


class _Quiet(WSGIRequestHandler):
    def log_request(self, *args: object) -> None:
        """The stand-in's requests are the app's own: nothing to show."""


class RaptorStandIn:
    """Raptor's servers on ``127.0.0.1``: what they received, and what they answer."""

    def __init__(self, *, membership_api_key: str = MEMBERSHIP_API_KEY, activation_id: str = ACTIVATION_ID,
                 recommendations_api_key: str = RECOMMENDATIONS_API_KEY, gdpr_api_key: str = GDPR_API_KEY) -> None:
        #: Tracking events received, in arrival order: each a dict of its query parameters.
        self.events: list[dict[str, str]] = []
        #: Records streamed to the Streaming API, in arrival order.
        self.exports: list[dict[str, Any]] = []
        #: User ids the GDPR API was asked to delete, in arrival order.
        self.deletions: list[str] = []
        #: What the CDP API answers for a visitor: ``[(audience id, name), …]``.
        self.visitor_segments: dict[str, list[tuple[str, str]]] = {}
        #: The activation's audiences: ``{audience id: (name, [user ids])}``.
        self.audiences: dict[str, tuple[str, list[str]]] = {}
        #: What each recommendation method answers: ``{method: [ids]}``.
        self.recommendations: dict[str, list[str]] = {}
        #: Optional answers computed per call (the demo's), asked before the dicts above.
        self.answer_visitor_segments: Callable[[str], list[tuple[str, str]] | None] | None = None
        self.answer_recommendations: RecommendationsAnswer | None = None
        #: Called with each tracking event as it arrives (the demo remembers its visitors' views).
        self.on_event: Callable[[dict[str, str]], None] | None = None
        self._keys = {"membership": membership_api_key, "recommendations": recommendations_api_key, "gdpr": gdpr_api_key}
        self.activation_id = activation_id
        self._arrived = threading.Condition()
        self._server: BaseWSGIServer = make_server("127.0.0.1", 0, self._app(), threaded=True, request_handler=_Quiet)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.1,), name="cdp-raptor-stand-in",
                                        daemon=True)
        self._thread.start()

    @property
    def config(self) -> dict[str, Any]:
        """The ``CDP_*`` settings that point an app at the stand-in (the host adds its own
        account number and activation)."""
        return {"CDP_SERVER_TRACKING_URL": self.url, "CDP_MEMBERSHIP_API_URL": self.url,
                "CDP_MEMBERSHIP_ACTIVATION_ID": self.activation_id, "CDP_MEMBERSHIP_API_KEY": self._keys["membership"],
                "CDP_RECOMMENDATIONS_API_URL": self.url, "CDP_RECOMMENDATIONS_API_KEY": self._keys["recommendations"],
                "CDP_STREAM_API_URL": f"{self.url}/stream", "CDP_GDPR_API_URL": f"{self.url}/gdpr",
                "CDP_GDPR_API_KEY": self._keys["gdpr"]}

    def wait_for_events(self, count: int, timeout: float = 5) -> list[dict[str, str]]:
        """The events once at least ``count`` have arrived (the server-side sender sends
        from a thread of its own); an AssertionError after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        with self._arrived:
            while len(self.events) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"the stand-in for Raptor got {len(self.events)} events, not {count}, in"
                                         f" {timeout:g} s: {self.events}")
                self._arrived.wait(left)
            return list(self.events)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def __enter__(self) -> RaptorStandIn:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the servers ------------------------------------------------------------------------

    def _app(self) -> Flask:
        api = Flask("cdp_raptor_stand_in")
        api.add_url_rule("/<account>.rsa", "tracking", self._tracking_event)
        api.add_url_rule("/<account>.stream", "tracking_stream", self._tracking_event)
        api.add_url_rule("/api/v3/memberships/coid", "memberships", self._memberships)
        api.add_url_rule("/api/v3/audiences", "audiences", self._audiences)
        api.add_url_rule("/api/v3/membership/<audience_id>", "membership", self._audience_members)
        api.add_url_rule("/v1/<account>/<method>/<int:count>/<key>", "recommendations", self._recommendations)
        api.add_url_rule("/stream/<account>", "stream", self._stream, methods=["POST"])
        api.add_url_rule("/gdpr/<account>/DeleteUser", "gdpr", self._delete_user, methods=["POST"])
        return api

    def _tracking_event(self, account: str) -> tuple[str, int]:
        event = request.args.to_dict()
        with self._arrived:
            self.events.append(event)
            self._arrived.notify_all()
        if self.on_event is not None:
            self.on_event(event)
        return "", 204

    def _cdp_api_refused(self) -> bool:
        return (request.headers.get("X-ACTIVATION-ID") != self.activation_id
                or not _same(request.headers.get("X-API-KEY", ""), self._keys["membership"]))

    def _memberships(self) -> ResponseReturnValue:
        if self._cdp_api_refused():
            return {"error": "unauthorized"}, 401
        visitor = request.args.get("identifierValue", "")
        found = self.answer_visitor_segments(visitor) if self.answer_visitor_segments is not None else None
        if found is None:
            found = self.visitor_segments.get(visitor)
        if found is None:
            return {"error": "not found"}, 404
        return {"memberships": [{"id": audience_id, "name": name} for audience_id, name in found]}

    def _audiences(self) -> ResponseReturnValue:
        if self._cdp_api_refused():
            return {"error": "unauthorized"}, 401
        return {"audiences": [{"id": audience_id, "name": name} for audience_id, (name, _) in self.audiences.items()]}

    def _audience_members(self, audience_id: str) -> ResponseReturnValue:
        if self._cdp_api_refused():
            return {"error": "unauthorized"}, 401
        if audience_id not in self.audiences:
            return {"error": "not found"}, 404
        return {"profiles": list(self.audiences[audience_id][1]), "sequence": int(time.time() * 1000)}

    def _recommendations(self, account: str, method: str, count: int, key: str) -> ResponseReturnValue:
        if not _same(key, self._keys["recommendations"]):
            return {"error": "unauthorized"}, 401
        parameters = {name: value for name, value in request.args.items() if name != "json"}
        ids = self.answer_recommendations(method, parameters) if self.answer_recommendations is not None else None
        if ids is None:
            ids = self.recommendations.get(method)
        if ids is None:
            return {"error": f"no web module with the method {method}"}, 404
        return [{"RecommendedId": item_id, "Priority": count - rank} for rank, item_id in enumerate(ids[:count])]

    def _stream(self, account: str) -> ResponseReturnValue:
        records = json.loads(request.get_data() or b"null")
        if not isinstance(records, list):
            return {"error": "expected a JSON array"}, 400
        self.exports.extend(records)
        return "", 200

    def _delete_user(self, account: str) -> ResponseReturnValue:
        if not _same(request.headers.get("x-api-key", ""), self._keys["gdpr"]):
            return {"error": "unauthorized"}, 401
        body = request.get_json(silent=True)
        if not isinstance(body, dict) or not isinstance(body.get("UserId"), str):
            return {"error": 'expected {"UserId": "…"}'}, 400
        self.deletions.append(body["UserId"])
        return {"status": "OK"}, 200


def _same(given: str, expected: str) -> bool:
    """Keys compared in constant time, as a real server would."""
    return hmac.compare_digest(given.encode(), expected.encode())
