"""A fleet of real processes (SPEC section 12): one PostgreSQL, one Redis, two gunicorn
"hosts" on 127.0.0.2 and 127.0.0.3 with 2 workers each, and two ``flask cdp worker``
processes. Raptor's CDP API and tracking host are local fakes; everything else is real.

It shows that the limits, the cache and the figures hold across hosts: a limit of N a
minute admits N across both hosts, a visitor seen on both costs one API call, 200
deliveries posted alternately to both hosts are each applied exactly once while a worker
is SIGKILLed and restarted, each host's ``/cdp/metrics`` sums its workers and the hosts'
totals add up, and stopping Redis mid-run fails no request.
"""

from __future__ import annotations

import http.client
import json
import re
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from tests.support.fake_membership_api import FakeMembershipAPI, Reply
from tests.support.fake_tracking_host import FakeTrackingHost
from tests.support.logs import remember_output
from tests.support.metrics import value
from tests.support.polling import wait_until
from tests.support.postgres_server import PostgresServer, free_port
from tests.support.processes import REPO, process_env, run_flask, start_flask, wait_until_serving
from tests.support.redis_server import RedisServer
from tests.support.webhook import ACTIVATION, basic_auth

pytestmark = pytest.mark.slow

HOSTS = ("127.0.0.2", "127.0.0.3")
#: The client address the tracking posts come from: one address, whichever host it reaches.
CLIENT_ADDRESS = "127.0.0.4"
ADDRESS_LIMIT = 20
TOKEN = "metrics-token-0123456789abcdef"
VISITOR = "0b6f7c2e-5a3d-4e1f-9c8b-7a6d5e4f3a2b"
DELIVERIES = 200
SITE = '''
from flask import Flask, render_template_string
from cdp_bridge import CDP

app = Flask("fleet_site")
app.config.update({config!r})
cdp = CDP(app)


@app.get("/page")
def page():
    return render_template_string("{{{{ cdp_in_segment('Cat owners') }}}}")
'''


@dataclass
class Fleet:
    directory: Path
    hosts: list[str]
    worker_metrics: list[str]
    workers: list[subprocess.Popen]
    redis: RedisServer
    api: FakeMembershipAPI
    module: str = "fleet_site"

    def start_worker(self, index: int, port: int) -> subprocess.Popen:
        return start_flask(self.directory, self.module, "cdp", "worker", "--poll-seconds", "0.1", "--lease-seconds", "3",
                           "--metrics-port", str(port), log_file=self.directory / f"worker{index}.log")


@pytest.fixture
def fleet(postgres_server: PostgresServer, own_redis: RedisServer, tmp_path: Path) -> Iterator[Fleet]:
    api = FakeMembershipAPI(default=Reply.memberships(("5d822e81", "Cat owners")))
    tracking = FakeTrackingHost()
    config = {
        "SQLALCHEMY_DATABASE_URI": postgres_server.create_database(), "SECRET_KEY": "fleet", **ACTIVATION,
        "CDP_INLINE_WORKER": False, "CDP_BULK_ASYNC_THRESHOLD": 1,  # every delivery goes through the workers
        "CDP_RATE_LIMIT_STORAGE_URI": own_redis.url, "CDP_CACHE_URL": own_redis.url, "CDP_METRICS_TOKEN": TOKEN,
        "CDP_TRACKING_MODE": "hybrid", "CDP_ACCOUNT_NUMBER": "123456", "CDP_CONSENT_COOKIE": "consent",
        "CDP_SERVER_TRACKING_URL": tracking.url, "CDP_TRACK_ADDRESS_LIMIT_PER_MINUTE": ADDRESS_LIMIT,
        "CDP_MEMBERSHIP_API_URL": api.url, "CDP_MEMBERSHIP_ACTIVATION_ID": "fleet-activation",
        "CDP_MEMBERSHIP_API_KEY": "fleet-membership-key-0123", "CDP_MEMBERSHIP_TIMEOUT": 2,
    }
    (tmp_path / "fleet_site.py").write_text(SITE.format(config=config))
    assert run_flask(tmp_path, "fleet_site", "cdp", "init-db").returncode == 0
    assert run_flask(tmp_path, "fleet_site", "cdp", "segment-group", "create", "shop").returncode == 0
    servers, logs, bases = [], [], []
    for address in HOSTS:
        base = f"http://{address}:{free_port()}"
        env = process_env(tmp_path, GUNICORN_APP="fleet_site:app", GUNICORN_BIND=base.removeprefix("http://"),
                          GUNICORN_WORKERS="2", GUNICORN_ACCESSLOG="")
        log = open(tmp_path / f"gunicorn-{address}.log", "w")  # noqa: SIM115 - closed below
        servers.append(subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", str(REPO / "gunicorn.conf.py")],
                                        cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT, text=True))
        logs.append(log)
        bases.append(base)
    ports = [free_port(), free_port()]
    made = Fleet(tmp_path, bases, [f"http://127.0.0.1:{port}" for port in ports], [], own_redis, api)
    made.workers = [made.start_worker(index, port) for index, port in enumerate(ports)]
    try:
        for base, server in zip(bases, servers, strict=True):
            wait_until_serving(base + "/cdp/webhook", server)
        for url, worker in zip(made.worker_metrics, made.workers, strict=True):
            wait_until_serving(url, worker)
        yield made
    finally:
        for process in (*servers, *made.workers):
            process.terminate()
        for process in (*servers, *made.workers):
            process.wait(30)
        for log in logs:
            log.close()
        for path in tmp_path.glob("*.log"):
            remember_output(path.read_text())
        api.close()
        tracking.close()


def track(base: str, visitor: str) -> int:
    """One hybrid event posted from CLIENT_ADDRESS, as the page's shim posts it."""
    host, port = base.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10, source_address=(CLIENT_ADDRESS, 0))
    body = json.dumps({"params": {"p1": "visit", "p2": "cat-tree"}, "url": f"{base}/page"})
    connection.request("POST", "/cdp/track", body=body, headers={
        "Content-Type": "application/json", "Sec-Fetch-Site": "same-origin", "Cookie": f"consent=1; rsa={visitor}"})
    status = connection.getresponse().status
    connection.close()
    return status


def page(base: str, visitor: str) -> requests.Response:
    return requests.get(base + "/page", cookies={"consent": "1", "rsa": visitor}, timeout=10)


def deliver(base: str, number: int) -> int:
    audience = {"id": f"a{number:07x}", "name": f"Audience {number}", "members": [f"u{number}-{m}" for m in range(10)]}
    response = requests.post(base + "/cdp/webhook", json={"audiences": [audience], "request_id": f"fleet-{number}"},
                             headers=basic_auth(), timeout=30)
    return response.status_code


def scrape(url: str, headers: dict[str, str] | None = None) -> str:
    response = requests.get(url, headers=headers, timeout=10)
    assert response.status_code == 200, response.text
    return response.text


def host_metrics(fleet: Fleet) -> list[str]:
    return [scrape(base + "/cdp/metrics", {"Authorization": f"Bearer {TOKEN}"}) for base in fleet.hosts]


def test_a_fleet_shares_limits_cache_queue_and_figures(fleet: Fleet) -> None:
    label = {"activation": ACTIVATION["CDP_ACTIVATION_CLIENT_ID"]}

    # A limit of N a minute per client address admits N across both hosts, not 2N (or 4N).
    statuses = [track(fleet.hosts[n % 2], str(uuid.uuid4())) for n in range(2 * ADDRESS_LIMIT)]
    assert statuses.count(204) == ADDRESS_LIMIT and statuses.count(429) == ADDRESS_LIMIT, statuses

    # A visitor seen on both hosts (each twice, so every worker may serve one) costs one call.
    for n in range(4):
        assert page(fleet.hosts[n % 2], VISITOR).text == "True"
    assert [asked.visitor_id for asked in fleet.api.asked] == [VISITOR]

    # 200 deliveries, alternately to both hosts, from 8 clients at once; one worker is
    # SIGKILLed a quarter of the way through and started again at half.
    killed, port = fleet.workers[0], int(fleet.worker_metrics[0].rsplit(":", 1)[1])
    with ThreadPoolExecutor(8) as clients:
        first = list(clients.map(lambda n: deliver(fleet.hosts[n % 2], n), range(DELIVERIES // 4)))
        killed.send_signal(signal.SIGKILL)
        killed.wait(10)
        second = list(clients.map(lambda n: deliver(fleet.hosts[n % 2], n), range(DELIVERIES // 4, DELIVERIES // 2)))
        fleet.workers[0] = fleet.start_worker(2, port)
        third = list(clients.map(lambda n: deliver(fleet.hosts[n % 2], n), range(DELIVERIES // 2, DELIVERIES)))
    assert first + second + third == [202] * DELIVERIES
    wait_until(lambda: _all_applied(fleet), "every delivery applied", seconds=90, every=1)
    _each_applied_once(fleet)

    # Each host's /cdp/metrics sums its two workers; the hosts' totals add up to what was sent.
    texts = host_metrics(fleet)
    received = [value(text, "cdp_deliveries_received_total", **label) for text in texts]
    assert received == [DELIVERIES / 2, DELIVERIES / 2]
    assert sum(value(text, "cdp_rate_limited_total", endpoint="track") for text in texts) == ADDRESS_LIMIT
    assert sum(value(text, "cdp_tracking_events_total", outcome="queued") for text in texts) == ADDRESS_LIMIT
    assert sum(value(text, "cdp_membership_api_calls_total", outcome="ok") for text in texts) == 1
    assert all(value(text, "cdp_webhook_duration_seconds_count") >= DELIVERIES / 2 for text in texts)
    for text in (*texts, *(scrape(url) for url in fleet.worker_metrics)):
        assert value(text, "cdp_queue_depth") == 0  # every process reads the one queue

    # Redis stops: no request fails. Pages go to the API, events are admitted unlimited.
    fleet.redis.stop()
    other = str(uuid.uuid4())
    assert [page(base, other).status_code for base in fleet.hosts * 2] == [200] * 4
    assert all(status == 204 for status in (track(base, str(uuid.uuid4())) for base in fleet.hosts * 3))
    assert [deliver(fleet.hosts[n % 2], DELIVERIES + n) for n in range(4)] == [202] * 4


def _all_applied(fleet: Fleet) -> bool:
    listing = run_flask(fleet.directory, fleet.module, "cdp", "deliveries", "--status", "applied", "--limit", "1000").stdout
    return listing.count("\tapplied\t") == DELIVERIES


def _each_applied_once(fleet: Fleet) -> None:
    """Every delivery's outcome line appears once in the workers' logs (a delivery applied
    twice would log twice), and every audience holds exactly its ten members."""
    logs = "".join(path.read_text() for path in fleet.directory.glob("worker*.log"))
    applied = re.findall(r"delivery (\d+) applied", logs)
    assert len(applied) == len(set(applied)), "a delivery was applied twice"
    # Every delivery's line is there, but for at most one the killed worker committed and never logged.
    assert len(applied) >= DELIVERIES - 1, f"only {len(applied)} outcome lines in the workers' logs"
    segments = run_flask(fleet.directory, fleet.module, "cdp", "segments", "--group", "shop").stdout
    counts = re.findall(r"shop/a[0-9a-f]{7}\t[^\t]*\t10 members", segments)
    assert len(counts) == DELIVERIES, segments[:2000]
