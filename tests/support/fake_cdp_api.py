"""A local fake of Raptor's CDP API for reconciles: ``GET /api/v3/audiences`` and
``GET /api/v3/membership/{audienceId}``, a real HTTP server on loopback.

It answers from ``audiences`` (id -> (name, members)) and ``sequences`` by default, in the
shape cdp_bridge reads first; ``replies`` overrides one path's answer (a refusal, a body
cut short, another shape). ``members_body`` may be a function writing a large answer in
pieces, so a million members are never one bytes object in the test either.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import unquote, urlsplit

from tests.support.fake_membership_api import Reply, send_reply
from tests.support.loopback import LoopbackServer

KEY = "cdp-api-key-0123456789"
ACTIVATION = "reconcile-activation"


def settings(fake: FakeCdpApi) -> dict[str, Any]:
    """What an app needs to reconcile from this fake."""
    return {"CDP_MEMBERSHIP_API_URL": fake.url, "CDP_MEMBERSHIP_ACTIVATION_ID": ACTIVATION,
            "CDP_MEMBERSHIP_API_KEY": KEY}


@dataclass
class FakeCdpApi:
    audiences: dict[str, tuple[str, list[str]]] = field(default_factory=dict)
    sequences: dict[str, int] = field(default_factory=dict)
    replies: dict[str, Reply] = field(default_factory=dict)
    #: Per audience: pieces of a members answer written one after another (chunked).
    streamed: dict[str, Callable[[], Iterator[bytes]]] = field(default_factory=dict)
    asked: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    #: Set while a members answer is being sent; the answer waits for ``release``.
    sending: threading.Event = field(default_factory=threading.Event)
    release: threading.Event | None = None

    def __post_init__(self) -> None:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                path = urlsplit(self.path).path
                fake.asked.append((path, {k.lower(): v for k, v in self.headers.items()}))
                if self.headers.get("X-API-KEY") != KEY or self.headers.get("X-ACTIVATION-ID") != ACTIVATION:
                    return self._send(Reply(401, b'{"error": "unauthorized"}'))
                if path in fake.replies:
                    return self._send(fake.replies[path])
                if path == "/api/v3/audiences":
                    body = {"audiences": [{"id": i, "name": n} for i, (n, _) in fake.audiences.items()]}
                    return self._send(Reply(body=json.dumps(body).encode()))
                prefix = "/api/v3/membership/"
                audience = unquote(path[len(prefix):]) if path.startswith(prefix) else None
                if audience in fake.streamed:
                    return self._chunked(fake.streamed[audience]())
                if audience not in fake.audiences:
                    return self._send(Reply(404, b'{"error": "not found"}'))
                fake.sending.set()
                if fake.release is not None:
                    fake.release.wait(30)
                body = {"profiles": [{"identifierValue": u} for u in fake.audiences[audience][1]]}
                if audience in fake.sequences:
                    body["sequenceNumber"] = fake.sequences[audience]
                self._send(Reply(body=json.dumps(body).encode()))

            def _send(self, reply: Reply) -> None:
                """Each answer on a connection of its own: one without a length ends with it."""
                self.close_connection = True
                send_reply(self, replace(reply, headers={**reply.headers, "Connection": "close"}))

            def _chunked(self, pieces: Iterator[bytes]) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                try:
                    for piece in pieces:
                        self.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
                    self.wfile.write(b"0\r\n\r\n")
                except OSError:
                    pass

            def log_message(self, *args: Any) -> None:
                pass

        self.loopback = LoopbackServer(Handler)
        self.url = self.loopback.url

    def close(self) -> None:
        self.loopback.close()
