"""``GET /cdp/metrics``: the Prometheus scrape of a host (SPEC section 12).

Open to ``Authorization: Bearer <CDP_METRICS_TOKEN>`` (compared in constant time) and to
whom the admin guard admits; with neither configured the route answers 404, as if it
did not exist. Under gunicorn the figures of all the host's workers are summed.
``flask cdp worker --metrics-port`` serves the same figures of a worker process.
"""

from __future__ import annotations

from datetime import datetime

from flask import Blueprint, Flask, Response, abort, current_app, request
from prometheus_client import CONTENT_TYPE_LATEST, start_http_server

from ..constants import METRICS_PATH
from ..metrics import QueueCollector, exposition, scrape_registry
from ..state import CDPState, current_state


def register_metrics_endpoint(blueprint: Blueprint) -> None:
    blueprint.add_url_rule(METRICS_PATH, "metrics", serve_metrics, methods=["GET"])


def serve_metrics() -> Response:
    state = current_state()
    token, guard = state.settings.site.metrics_token, state.hooks.admin_guard
    if token is None and guard is None:
        abort(404)
    scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
    bearer_ok = token is not None and scheme.lower() == "bearer" and token.matches(presented.strip())
    if not bearer_ok and not (guard is not None and guard()):
        if token is None:
            abort(403)
        response = Response("a bearer token is needed\n", status=401, mimetype="text/plain")
        response.headers["WWW-Authenticate"] = 'Bearer realm="cdp-metrics"'
        return response
    app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]
    return Response(exposition(_queue_collector(app)), content_type=CONTENT_TYPE_LATEST)


def _queue_collector(app: Flask) -> QueueCollector:
    """The queue's gauges of ``app``'s database, read at each scrape (from any thread)."""
    state: CDPState = app.extensions["cdp"]

    def read() -> tuple[int, datetime | None]:
        with app.app_context():
            health = state.inbox.queue_health()
        return health.queued, health.oldest_queued_at

    return QueueCollector(read)


def serve_worker_metrics(app: Flask, host: str, port: int) -> None:
    """Serve this process's figures (and the queue's) at ``http://host:port/`` from a thread."""
    start_http_server(port, host, registry=scrape_registry(_queue_collector(app), None))
