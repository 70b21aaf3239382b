"""A real HTTP server on 127.0.0.1 in a thread: what the fakes of Raptor's servers run on."""

from __future__ import annotations

import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from flask import Flask


class LoopbackServer:
    """Serves ``handler`` on a free loopback port until :meth:`close`; over HTTPS with
    ``tls`` (a certificate file and its key file)."""

    def __init__(self, handler: type[BaseHTTPRequestHandler], tls: tuple[str, str] | None = None) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        scheme = "http"
        if tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
            scheme = "https"
        self.url = f"{scheme}://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)


def bare_app(tmp_path, name: str = "bare") -> Flask:  # noqa: ANN001 - a pytest tmp_path
    """An app with cdp_bridge and no CDP setting at all, on SQLite."""
    from cdp_bridge import CDP

    app = Flask(name, instance_path=str(tmp_path / f"{name}-instance"))
    app.config.update(SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path}/{name}.sqlite3")
    CDP().init_app(app)
    return app
