"""A local fake of Raptor's GDPR API: a real HTTP server on loopback that records every
request (method, path, headers, body) and answers from a script of status codes (then
200), and can hold every request until released (an API that never answers)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.support.loopback import LoopbackServer


@dataclass
class GdprCall:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class FakeGdprApi:
    statuses: list[int] = field(default_factory=list)
    calls: list[GdprCall] = field(default_factory=list)
    released: threading.Event = field(default_factory=threading.Event)
    #: Called when a request has arrived, before it is answered (a test kills a worker there).
    on_call: Callable[[GdprCall], None] | None = None

    def __post_init__(self) -> None:
        self.released.set()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                call = GdprCall("POST", self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                fake.calls.append(call)
                if fake.on_call is not None:
                    fake.on_call(call)
                fake.released.wait(60)
                status = fake.statuses.pop(0) if fake.statuses else 200
                answer = b'{"status":"OK"}' if status < 300 else b'{"error":"no"}'
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(answer)))
                    self.end_headers()
                    self.wfile.write(answer)
                except OSError:
                    pass

            def log_message(self, *args: Any) -> None:
                pass

        self.loopback = LoopbackServer(Handler)
        self.url = self.loopback.url

    def hold(self) -> None:
        self.released.clear()

    def release(self) -> None:
        self.released.set()

    def wait_for(self, condition: Callable[[FakeGdprApi], bool], seconds: float = 20) -> None:
        deadline = time.monotonic() + seconds
        while not condition(self):
            assert time.monotonic() < deadline, f"the fake GDPR API got {len(self.calls)} calls"
            time.sleep(0.02)

    def close(self) -> None:
        self.release()
        self.loopback.close()
