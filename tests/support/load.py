"""Load for the webhook: a deterministic set of deliveries, concurrent clients that retry
like the CDP would, a model of the final state computed independently, and a stack of
real processes (gunicorn gthread workers and ``flask cdp worker`` processes) on loopback.

Used by the load and fault tests (bounded, with assertions) and by
``benchmarks/webhook_load.py`` (figures against a bare Flask endpoint).
"""

from __future__ import annotations

import base64
import json
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import requests

from tests.support.postgres_server import free_port
from tests.support.processes import REPO, process_env, start_flask, wait_until_serving, write_app_module

CLIENT_ID = "load-client"
CLIENT_SECRET = "load-client-secret-value-0123456789"
AUTH = "Basic " + base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
SITE_CONFIG = {
    "CDP_ACTIVATION_CLIENT_ID": CLIENT_ID,
    "CDP_ACTIVATION_CLIENT_SECRET": CLIENT_SECRET,
    "CDP_SEGMENT_GROUP_IDENTIFIER": "load",
    "CDP_BULK_ASYNC_THRESHOLD": 25,
    "CDP_INLINE_WORKER": False,
}
BARE_APP = """
from flask import Flask, jsonify, request
app = Flask("bare")

@app.post("/bare")
def bare():
    request.get_data()
    return jsonify(status="ok")
"""


@dataclass(frozen=True)
class Delivery:
    request_id: str
    body: bytes


@dataclass
class Workload:
    """Deliveries to send (duplicates and out-of-order sequences among them) and the final
    memberships they must produce, computed without cdp_bridge."""

    deliveries: list[Delivery]
    expected: dict[str, set[str]]


def make_workload(count: int, seed: int = 7) -> Workload:
    rng = random.Random(seed)
    latest: dict[str, tuple[int, set[str] | None]] = {}
    added: dict[str, set[str]] = {f"a{i}": set() for i in range(10)}
    unique: list[Delivery] = []
    sequence = 0
    duplicates = max(1, count // 20)
    for number in range(count - duplicates):
        changes = []
        for _ in range(rng.randint(1, 3)):
            if rng.random() < 0.7:
                sequence += 1
                audience = f"r{rng.randrange(30)}"
                if rng.random() < 0.05:
                    changes.append({"id": audience, "deleted": True, "sequence": sequence})
                    members = None
                else:
                    size = rng.choice([1, 3, 8, 40])  # 40 ids put a delivery over the threshold
                    members = {str(rng.randrange(500)) for _ in range(size)}
                    changes.append({"id": audience, "name": f"Audience {audience}", "members": sorted(members),
                                    "sequence": sequence})
                if sequence > latest.get(audience, (0, None))[0]:
                    latest[audience] = (sequence, members)
            else:
                audience = f"a{rng.randrange(10)}"
                ids = [f"{number}-{k}" for k in range(rng.randint(1, 4))]
                changes.append({"id": audience, "add": ids})
                added[audience].update(ids)
        request_id = f"load-{number}"
        unique.append(Delivery(request_id, json.dumps({"request_id": request_id, "audiences": changes}).encode()))
    rng.shuffle(unique)  # arrival order differs from sequence order
    deliveries = unique + [rng.choice(unique) for _ in range(duplicates)]
    rng.shuffle(deliveries)
    expected = {a: members for a, (_, members) in latest.items() if members is not None}
    expected.update({a: ids for a, ids in added.items() if ids})
    return Workload(deliveries, expected)


@dataclass
class Outcome:
    """What the clients saw."""

    latencies: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    acknowledged: dict[str, int] = field(default_factory=dict)  # request id -> delivery id
    unanswered: list[str] = field(default_factory=list)
    connection_errors: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def requests_per_second(self) -> float:
        return len(self.latencies) / self.seconds if self.seconds else 0.0

    def percentile(self, fraction: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))] if ordered else 0.0

    def summary(self, label: str) -> str:
        return (f"{label}: {len(self.latencies)} requests in {self.seconds:.1f} s = {self.requests_per_second:.0f}/s, "
                f"p50 {self.percentile(0.5) * 1000:.1f} ms, p99 {self.percentile(0.99) * 1000:.1f} ms, "
                f"statuses {dict(sorted(self.statuses.items()))} (0: connection error, retried)")


def send_all(url: str | list[str], deliveries: list[Delivery], clients: int = 50, deadline_seconds: float = 240,
             on_progress: Callable[[int], None] | None = None, retry: bool = True) -> Outcome:
    """POST every delivery from ``clients`` threads (to the URLs in turn, when given several);
    503s and broken connections are retried with the same request id until acknowledged or
    the deadline passes."""
    outcome = Outcome()
    lock = threading.Lock()
    urls = [url] if isinstance(url, str) else url
    queue = [(urls[index % len(urls)], delivery) for index, delivery in enumerate(deliveries)][::-1]
    done = [0]
    deadline = time.monotonic() + deadline_seconds

    def client() -> None:
        session = requests.Session()
        headers = {"Authorization": AUTH, "Content-Type": "application/json"}
        while True:
            with lock:
                if not queue:
                    return
                target, delivery = queue.pop()
            _deliver(session, target, headers, delivery, outcome, lock, deadline, retry)
            with lock:
                done[0] += 1
                count = done[0]
            if on_progress is not None:
                on_progress(count)

    started = time.monotonic()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    outcome.seconds = time.monotonic() - started
    return outcome


def _deliver(session: requests.Session, url: str, headers: dict[str, str], delivery: Delivery, outcome: Outcome,
             lock: threading.Lock, deadline: float, retry: bool) -> None:
    while time.monotonic() < deadline:
        started = time.monotonic()
        response = None
        try:
            response = session.post(url, data=delivery.body, headers=headers, timeout=30)
            status, answer = response.status_code, (response.json() if response.content else {})
        except ValueError:
            status, answer = response.status_code, {}  # type: ignore[union-attr]
            with lock:
                outcome.connection_errors.append(f"not JSON: HTTP {status}: {response.text[:300]!r}")  # type: ignore[union-attr]
        except requests.RequestException as exc:  # a worker killed mid-answer also cuts the body short
            status, answer = 0, {}
            with lock:
                outcome.connection_errors.append(f"{type(exc).__name__}: {str(exc)[:200]}")
        with lock:
            outcome.latencies.append(time.monotonic() - started)
            outcome.statuses[status] = outcome.statuses.get(status, 0) + 1
            if status in (200, 202) and "delivery_id" in answer:
                known = outcome.acknowledged.setdefault(delivery.request_id, answer["delivery_id"])
                assert known == answer["delivery_id"], "a duplicate was acknowledged as another delivery"
                return
        if not retry or status not in (0, 502, 503):
            with lock:
                outcome.unanswered.append(delivery.request_id)
            return
        time.sleep(0.2)
    with lock:
        outcome.unanswered.append(delivery.request_id)


@dataclass
class Stack:
    """gunicorn serving a site, plus queue workers, on one database."""

    directory: Path
    module: str
    url: str
    server: subprocess.Popen
    workers: list[subprocess.Popen]

    @classmethod
    def start(cls, directory: Path, database_url: str, *, queue_workers: int = 2, lease_seconds: int = 5,
              gunicorn_workers: int = 2, threads: int = 16) -> Stack:
        module = write_app_module(directory, database_url, "load_site", **SITE_CONFIG)
        server = start_gunicorn(directory, f"{module}:app", gunicorn_workers, threads)
        workers = [start_queue_worker(directory, module, lease_seconds) for _ in range(queue_workers)]
        url = f"http://127.0.0.1:{server.port}/cdp/webhook"  # type: ignore[attr-defined]
        stack = cls(directory, module, url, server, workers)
        wait_until_serving(url, server)
        return stack

    def gunicorn_worker_pids(self) -> list[int]:
        children = Path(f"/proc/{self.server.pid}/task/{self.server.pid}/children").read_text().split()
        return [int(pid) for pid in children]

    def stop(self) -> str:
        """Stop every process; returns their logs."""
        for process in [self.server, *self.workers]:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        return "\n".join(path.read_text() for path in sorted(self.directory.glob("*.log")))


def start_gunicorn(directory: Path, app_path: str, workers: int, threads: int, address: str = "127.0.0.1",
                   **environment: str) -> subprocess.Popen:
    port = free_port()
    env = process_env(directory, GUNICORN_APP=app_path, GUNICORN_BIND=f"{address}:{port}",
                      GUNICORN_WORKERS=str(workers), GUNICORN_THREADS=str(threads), GUNICORN_ACCESSLOG="", **environment)
    log = open(directory / f"gunicorn-{port}.log", "a")  # noqa: SIM115 - the process owns it
    process = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", str(REPO / "gunicorn.conf.py")], cwd=directory,
                               env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
    process.port = port  # type: ignore[attr-defined]
    process.url = f"http://{address}:{port}"  # type: ignore[attr-defined]
    return process


def start_queue_worker(directory: Path, module: str, lease_seconds: int) -> subprocess.Popen:
    log = directory / f"worker-{len(list(directory.glob('worker-*.log')))}.log"
    return start_flask(directory, module, "cdp", "worker", "--poll-seconds", "0.2", "--lease-seconds", str(lease_seconds),
                       log_file=log)


def bare_endpoint(directory: Path, workers: int = 2, threads: int = 16) -> tuple[str, subprocess.Popen]:
    (directory / "bare_app.py").write_text(BARE_APP)
    server = start_gunicorn(directory, "bare_app:app", workers, threads)
    url = f"http://127.0.0.1:{server.port}/bare"  # type: ignore[attr-defined]
    wait_until_serving(url, server)
    return url, server
