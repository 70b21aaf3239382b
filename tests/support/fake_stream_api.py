"""A local fake of Raptor's Streaming API: a real HTTP server on loopback that records
every request and answers from a script of responses (then 200)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.support.loopback import LoopbackServer


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def items(self) -> list[dict[str, Any]]:
        return json.loads(self.body)


@dataclass
class Answer:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


class FakeStreamAPI:
    """Records requests; answers with ``script`` in order, then 200."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.script: list[Answer] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                fake.received.append(Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                answer = fake.script.pop(0) if fake.script else Answer()
                self.send_response(answer.status)
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(answer.body)))
                self.end_headers()
                self.wfile.write(answer.body)

            def log_message(self, *args: Any) -> None:
                pass

        self.loopback = LoopbackServer(Handler)
        self.url = f"{self.loopback.url}/stream"

    def close(self) -> None:
        self.loopback.close()
