"""A real HTTP server on 127.0.0.1 in a thread: what the fakes of Raptor's servers run on."""

from __future__ import annotations

import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from flask import Flask


class LoopbackServer:
    """Serves ``handler`` on a free loopback port until :meth:`close`; over HTTPS with
    ``tls`` (a certificate file and its key file)."""

    def __init__(self, handler: type[BaseHTTPRequestHandler], tls: tuple[str, str] | None = None,
                 host: str = "127.0.0.1") -> None:
        self.server = ThreadingHTTPServer((host, 0), handler)
        self.server.daemon_threads = True
        scheme = "http"
        if tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
            scheme = "https"
        self.url = f"{scheme}://{host}:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)


class Listener:
    """Another host (a loopback address of its own) that records every request it is
    sent, headers included: where a redirect would take a client's secret."""

    def __init__(self, host: str = "127.0.0.2") -> None:
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        listener = self

        class Handler(BaseHTTPRequestHandler):
            def _record(self) -> None:
                listener.requests.append((self.command, self.path, dict(self.headers.items())))
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            do_GET = do_POST = _record

            def log_message(self, *args: object) -> None:
                pass

        self.loopback = LoopbackServer(Handler, host=host)
        self.url = self.loopback.url

    def close(self) -> None:
        self.loopback.close()


def bare_app(tmp_path, name: str = "bare") -> Flask:  # noqa: ANN001 - a pytest tmp_path
    """An app with cdp_bridge and no CDP setting at all, on SQLite."""
    from cdp_bridge import CDP

    app = Flask(name, instance_path=str(tmp_path / f"{name}-instance"))
    app.config.update(SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path}/{name}.sqlite3")
    CDP().init_app(app)
    return app
