"""A local fake of Raptor's CDP API for visitor segments: a real HTTP server on loopback
that records every request and answers each visitor from a table (else ``default``)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.support.loopback import LoopbackServer


@dataclass
class Asked:
    path: str
    visitor_id: str | None
    headers: dict[str, str]


@dataclass
class Reply:
    status: int = 200
    body: bytes = b'{"memberships": []}'
    delay: float = 0.0
    #: Seconds between the body's bytes: an answer drip-fed one byte at a time.
    drip: float = 0.0
    #: Without Content-Length, the body ends when the connection closes.
    content_length: bool = True
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def memberships(cls, *pairs: tuple[str, str], **extra: Any) -> Reply:
        return cls(body=json.dumps({"memberships": [{"id": i, "name": n} for i, n in pairs], **extra}).encode())


@dataclass
class FakeMembershipAPI:
    """Answers ``GET /api/v3/memberships/coid?identifierValue=…`` from ``replies``."""

    replies: dict[str, Reply] = field(default_factory=dict)
    default: Reply = field(default_factory=Reply)
    asked: list[Asked] = field(default_factory=list)

    def __post_init__(self) -> None:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                visitor = parse_qs(parts.query).get("identifierValue", [None])[0]
                fake.asked.append(Asked(parts.path, visitor, {k.lower(): v for k, v in self.headers.items()}))
                reply = fake.replies.get(visitor or "", fake.default)
                send_reply(self, reply)

            def log_message(self, *args: Any) -> None:
                pass

        self.loopback = LoopbackServer(Handler)
        self.url = self.loopback.url

    def calls_for(self, visitor_id: str) -> int:
        return sum(1 for asked in self.asked if asked.visitor_id == visitor_id)

    def close(self) -> None:
        self.loopback.close()


def send_reply(handler: BaseHTTPRequestHandler, reply: Reply) -> None:
    """Answer a request as ``reply`` says: late, drip-fed, without Content-Length…"""
    if reply.delay:
        time.sleep(reply.delay)
    try:
        handler.send_response(reply.status)
        handler.send_header("Content-Type", "application/json")
        if reply.content_length:
            handler.send_header("Content-Length", str(len(reply.body)))
        for name, value in reply.headers.items():
            handler.send_header(name, value)
        handler.end_headers()
        if reply.drip:
            for index in range(len(reply.body)):
                handler.wfile.write(reply.body[index:index + 1])
                handler.wfile.flush()
                time.sleep(reply.drip)
        else:
            for start in range(0, len(reply.body), 1 << 16):
                handler.wfile.write(reply.body[start:start + (1 << 16)])
    except OSError:  # the client gave up reading (a timeout or size test)
        pass
