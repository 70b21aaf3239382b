"""A local fake of Raptor's server-side tracking host: a real HTTP server on loopback that
records the raw path and query string of every request, answers from a script of status
codes (then 200), and can hold every request until released."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.support.loopback import LoopbackServer


@dataclass
class Hit:
    path: str
    query: str
    at: float = field(default_factory=time.monotonic)

    @property
    def params(self) -> dict[str, str]:
        """The query decoded (blank values kept), one value a name."""
        return {name: values[0] for name, values in parse_qs(self.query, keep_blank_values=True).items()}


@dataclass
class FakeTrackingHost:
    statuses: list[int] = field(default_factory=list)
    hits: list[Hit] = field(default_factory=list)
    released: threading.Event = field(default_factory=threading.Event)
    #: Serve HTTPS with this certificate file and key file.
    tls: tuple[str, str] | None = None
    #: Extra headers of the answers with a given status (e.g. 503: Retry-After).
    headers: dict[int, dict[str, str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.released.set()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                fake.hits.append(Hit(parts.path, parts.query))
                fake.released.wait(30)
                status = fake.statuses.pop(0) if fake.statuses else 200
                try:
                    self.send_response(status)
                    for name, value in fake.headers.get(status, {}).items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                except OSError:
                    pass

            def log_message(self, *args: Any) -> None:
                pass

        self.loopback = LoopbackServer(Handler, self.tls)
        self.url = self.loopback.url

    def hold(self) -> None:
        """Keep every request waiting (a host that hangs) until :meth:`release`."""
        self.released.clear()

    def release(self) -> None:
        self.released.set()

    def wait_for(self, condition: Callable[[FakeTrackingHost], bool], seconds: float = 10) -> None:
        deadline = time.monotonic() + seconds
        while not condition(self):
            assert time.monotonic() < deadline, f"the fake tracking host got {len(self.hits)} requests: {self.hits}"
            time.sleep(0.02)

    def close(self) -> None:
        self.release()
        self.loopback.close()


def main() -> None:
    """``python -m tests.support.fake_tracking_host``: serve in a process of its own (for
    the benchmarks, so the host's work is not charged to the process being measured);
    prints its URL, then serves until killed."""
    host = FakeTrackingHost()
    print(host.url, flush=True)
    host.loopback.thread.join()


if __name__ == "__main__":
    main()
