"""Real servers and a real headless Chromium for the browser tests.

Chromium comes from Debian's ``chromium`` package and is driven by Playwright's Python
package through ``executable_path`` (no browser download). The site under test is
served by a real HTTP server on loopback, and Raptor's script is replaced by a stub
served by :class:`RaptorStub`, which records every event the page sends it, so nothing
leaves the machine.
"""

from __future__ import annotations

import bisect
import json
import os
import shutil
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from werkzeug.serving import make_server

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(os.environ.get("CDP_TEST_ARTIFACTS", Path(__file__).resolve().parent.parent.parent / "test-artifacts"))


def chromium_path() -> str | None:
    return os.environ.get("CDP_TEST_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


def artifact(name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS / name


class ServedApp:
    """A WSGI app on a real threaded HTTP server on 127.0.0.1."""

    def __init__(self, app: Any, port: int = 0) -> None:
        self.server = make_server("127.0.0.1", port, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.thread.join(10)
        stop_background_threads(self.server.app)


def stop_background_threads(app: Any) -> None:
    """Stop what an app started beside its requests: the inline worker, the demo's
    stand-in for Raptor's servers."""
    state = app.extensions.get("cdp")
    if state is not None and state.inline_worker is not None:
        state.inline_worker.stop()
    if state is not None:
        state.tracking.sender.stop()
    stand_in = app.extensions.get("demo_raptor_stand_in")
    if stand_in is not None:
        stand_in.close()


STUB_SCRIPT = """(function () {
  var endpoint = %s, sent = 0;
  function send(entry) {
    // The requests run in parallel: "order" lets the stub put them back in the page's order.
    entry.order = [performance.timeOrigin, sent++];
    fetch(endpoint, {method: "POST", mode: "no-cors", keepalive: true, body: JSON.stringify(entry)});
  }
  var raptor = window.raptor;
  raptor.q.forEach(function (entry) { send({event: entry.event, params: entry.params}); });
  raptor.q = [];
  raptor.push = function (event, params) { send({event: event, params: params}); };
})();
"""


class RaptorStub:
    """Serves a stand-in for Raptor's script and records what pages send it."""

    def __init__(self) -> None:
        self._received: list[tuple[tuple[float, int], dict[str, Any]]] = []
        self.script_requests = 0
        self._changed = threading.Condition()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with stub._changed:
                    stub.script_requests += 1
                    stub._changed.notify_all()
                body = (STUB_SCRIPT % json.dumps(stub.url + "/collect")).encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/javascript")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                entry = json.loads(self.rfile.read(length))
                order = tuple(entry.pop("order"))
                with stub._changed:
                    bisect.insort(stub._received, (order, entry), key=lambda received: received[0])
                    stub._changed.notify_all()
                self.send_response(204)
                self.send_header("Access-Control-Allow-Origin", "*")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.script_url = self.url + "/raptor.js"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    @property
    def events(self) -> list[dict[str, Any]]:
        """What pages sent, in the order each page sent it (page loads in turn)."""
        return [entry for _, entry in self._received]

    def wait_for(self, condition: Callable[[RaptorStub], bool], timeout: float = 15.0) -> None:
        """Block until ``condition(self)`` holds, or fail after ``timeout`` seconds."""
        with self._changed:
            if not self._changed.wait_for(lambda: condition(self), timeout):
                raise AssertionError(f"Raptor stub: condition not met; events so far: {self.events}")

    def close(self) -> None:
        self.server.shutdown()
        self.thread.join(10)


def demo_login(page: Any, base_url: str, name: str) -> None:
    """Log in to the demo as one of its users (``Bob Example``…), and land on its home page."""
    page.goto(base_url + "/login")
    page.click(f"text={name}")
    page.click("button:has-text('Log in')")
    page.wait_for_url(base_url + "/")
