"""A local fake of Raptor's Recommendations API: a real HTTP server on loopback that
records every request and answers each method from a table (else ``default``)."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from tests.support.fake_membership_api import Reply, send_reply
from tests.support.loopback import LoopbackServer


@dataclass
class Asked:
    #: The raw path, key and all (``/v1/{account}/{method}/{count}/{key}``).
    path: str
    account: str
    method: str
    count: str
    key: str
    query: dict[str, str]


def recommended(*ids: str, history: bool = False) -> Reply:
    """An answer of the documented shape: ``[{"RecommendedId", "Priority", "CreateDate"?}]``."""
    entries: list[dict[str, Any]] = [{"RecommendedId": item_id, "Priority": len(ids) - index}
                                     for index, item_id in enumerate(ids)]
    if history:
        for entry in entries:
            entry["CreateDate"] = "2026-12-01T10:00:00"
    return Reply(body=json.dumps(entries).encode())


@dataclass
class FakeRecommendationsAPI:
    """Answers ``GET /v1/{account}/{method}/{count}/{key}?…&json=True`` from ``by_account``
    (by account), else ``replies`` (by method), else ``default``."""

    replies: dict[str, Reply] = field(default_factory=dict)
    by_account: dict[str, Reply] = field(default_factory=dict)
    default: Reply = field(default_factory=lambda: recommended("sku-1", "sku-2", "sku-3"))
    asked: list[Asked] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                segments = [unquote(segment) for segment in parts.path.split("/")]
                _, version, account, method, count, key = (segments + [""] * 6)[:6]
                query = {name: values[0] for name, values in parse_qs(parts.query, keep_blank_values=True).items()}
                with fake.lock:
                    fake.asked.append(Asked(parts.path, account, method, count, key, query))
                send_reply(self, fake.by_account.get(account) or fake.replies.get(method, fake.default))

            def log_message(self, *args: Any) -> None:
                pass

        self.loopback = LoopbackServer(Handler)
        self.url = self.loopback.url

    def close(self) -> None:
        self.loopback.close()
