"""Load and faults through real gunicorn (gthread) and PostgreSQL on loopback.

50 concurrent clients send deliveries (mixed sizes, some over the async threshold,
duplicates and out-of-order sequences among them); queue workers drain what is queued.
Nothing acknowledged may be lost, nothing applied twice, and the final memberships must
equal the model computed independently in :mod:`tests.load`. No timing is asserted.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import func, select

from cdp_bridge import CDP
from tests.support.load import SITE_CONFIG, Stack, make_workload, send_all, start_queue_worker
from tests.support.logs import remember_output
from tests.support.processes import run_flask, write_app_module

#: 10,000 deliveries through gunicorn, workers killed, PostgreSQL stopped: minutes; ``pytest -m "not slow"`` leaves them out.
pytestmark = pytest.mark.slow

LOAD_DELIVERIES = int(os.environ.get("CDP_LOAD_DELIVERIES", "10000"))
FAULT_DELIVERIES = int(os.environ.get("CDP_FAULT_DELIVERIES", "3000"))


@pytest.fixture
def site(postgres_server, tmp_path: Path) -> Iterator[tuple[str, Flask]]:
    url = postgres_server.create_database()
    module = write_app_module(tmp_path, url, "setup_site", **SITE_CONFIG)
    assert run_flask(tmp_path, module, "cdp", "init-db").returncode == 0
    assert run_flask(tmp_path, module, "cdp", "segment-group", "create", "load").returncode == 0
    app = Flask("load_check")
    app.config.update(SQLALCHEMY_DATABASE_URI=url, **SITE_CONFIG)
    CDP(app)
    yield url, app
    with app.app_context():
        app.extensions["cdp"].engine.dispose()


def wait_for_drain(app: Flask, seconds: float = 180) -> None:
    state = app.extensions["cdp"]
    d = state.tables.deliveries
    deadline = time.monotonic() + seconds
    with app.app_context():
        while True:
            with state.engine.connect() as conn:
                pending = conn.scalar(select(func.count()).where(d.c.status.in_(("queued", "processing"))))
            if pending == 0:
                return
            assert time.monotonic() < deadline, f"{pending} deliveries still pending"
            time.sleep(0.2)


def final_state(app: Flask) -> tuple[dict[str, set[str]], dict[int, tuple[str, int]]]:
    state = app.extensions["cdp"]
    with app.app_context():
        store = state.store
        memberships = {s.identifier: set(store.members("load", s.identifier)) for s in store.list_segments("load")}
        d = state.tables.deliveries
        with state.engine.connect() as conn:
            deliveries = {row.id: (row.status, row.attempts) for row in conn.execute(select(d.c.id, d.c.status, d.c.attempts))}
    return memberships, deliveries


def test_50_clients_10000_deliveries_nothing_lost_nothing_twice(site, tmp_path: Path) -> None:
    url, app = site
    workload = make_workload(LOAD_DELIVERIES)
    stack = Stack.start(tmp_path, url)
    try:
        outcome = send_all(stack.url, workload.deliveries, clients=50)
        print(outcome.summary("webhook under load"))
        wait_for_drain(app)
    finally:
        logs = stack.stop()
        remember_output(logs)
        print(logs[-3000:])
    assert all(status < 500 for status in outcome.statuses), (outcome.statuses, logs[-3000:])
    assert all("RemoteDisconnected" in e or "reset" in e.lower() for e in outcome.connection_errors), outcome.connection_errors
    assert outcome.unanswered == []
    memberships, deliveries = final_state(app)
    acknowledged = set(outcome.acknowledged.values())
    assert len(acknowledged) == len({d.request_id for d in workload.deliveries})
    assert {deliveries[i] for i in acknowledged} == {("applied", 1)}  # applied, and exactly once
    assert memberships == workload.expected


def test_killed_workers_and_a_database_outage_lose_nothing(site, postgres_server, tmp_path: Path) -> None:
    url, app = site
    workload = make_workload(FAULT_DELIVERIES, seed=11)
    stack = Stack.start(tmp_path, url, lease_seconds=2)
    faults: list[str] = []
    fired = threading.Event()

    def inject(done: int) -> None:
        if done == FAULT_DELIVERIES // 4 and not fired.is_set():
            fired.set()
            threading.Thread(target=run_faults, daemon=True).start()

    def run_faults() -> None:
        stack.workers[0].send_signal(signal.SIGKILL)  # a queue worker, mid-load
        faults.append("queue worker killed")
        os.kill(stack.gunicorn_worker_pids()[0], signal.SIGKILL)  # a gunicorn worker; the master respawns it
        faults.append("gunicorn worker killed")
        time.sleep(1)
        postgres_server.stop("immediate")
        faults.append("database stopped")
        time.sleep(3)
        postgres_server.start()
        faults.append("database started")
        stack.workers.append(start_queue_worker(tmp_path, stack.module, 2))

    try:
        outcome = send_all(stack.url, workload.deliveries, clients=50, on_progress=inject)
        deadline = time.monotonic() + 60
        while len(faults) < 4:
            assert time.monotonic() < deadline, f"faults stuck at {faults}"
            time.sleep(0.1)
        print(outcome.summary("webhook under faults (before drain)"))
        wait_for_drain(app, seconds=120)
    finally:
        logs = stack.stop()
        remember_output(logs)
        print(logs[-4000:])
    print(outcome.summary("webhook under faults"), faults)
    assert faults == ["queue worker killed", "gunicorn worker killed", "database stopped", "database started"]
    assert outcome.unanswered == [], logs[-3000:]
    assert 500 not in outcome.statuses
    memberships, deliveries = final_state(app)
    acknowledged = set(outcome.acknowledged.values())
    assert len(acknowledged) == len({d.request_id for d in workload.deliveries})
    assert {deliveries[i][0] for i in acknowledged} == {"applied"}
    assert memberships == workload.expected
