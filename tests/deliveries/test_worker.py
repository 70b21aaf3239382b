"""Queued deliveries: workers, retries with backoff, leases, replays, the inline worker."""

from __future__ import annotations

import logging
import re
import signal
import time
from datetime import timedelta
from pathlib import Path

import pytest
from flask import Flask
from freezegun import freeze_time
from sqlalchemy import delete, select, update

from cdp_bridge.deliveries.inbox import BACKOFF, MAX_ATTEMPTS, DeliveryInbox, IncomingDelivery
from cdp_bridge.model import ActivationDocument, AudienceChange
from cdp_bridge.store import history, utcnow
from tests.support.history import figure_today
from tests.support.logs import remember_output
from tests.support.polling import wait_until
from tests.support.processes import run_flask, start_flask, write_app_module
from tests.support.webhook import ACTIVATION, delivery_rows, memberships, post_webhook


def queue(app: Flask, *audiences: dict) -> int:
    """POST a delivery above the threshold (10 items); return its id."""
    padding = {"id": "padding", "add": [f"p{i}" for i in range(10)]}
    response = post_webhook(app, {"audiences": [*audiences, padding]})
    assert response.status_code == 202, response.get_json()
    return response.get_json()["delivery_id"]


def inbox(app: Flask) -> DeliveryInbox:
    return app.extensions["cdp"].inbox


def cli(app: Flask, *args: str):
    return app.test_cli_runner().invoke(args=["cdp", *args])


def drop_group_behind_the_stores_back(app: Flask) -> None:
    with app.app_context():
        state = app.extensions["cdp"]
        with state.engine.begin() as conn:
            conn.execute(delete(state.tables.segment_groups))


def test_worker_once_applies_queued_deliveries(webhook_app: Flask) -> None:
    first = queue(webhook_app, {"id": "a", "members": ["1"]})
    second = queue(webhook_app, {"id": "a", "add": ["2"]})
    result = cli(webhook_app, "worker", "--once")
    assert result.exit_code == 0, result.output
    assert "Processed 2 deliveries" in result.output
    assert memberships(webhook_app)["a"] == {"1", "2"}
    rows = {d.id: d for d in delivery_rows(webhook_app)}
    assert [rows[first].status, rows[second].status] == ["applied", "applied"]
    assert rows[first].attempts == 1 and rows[first].applied == 2
    assert cli(webhook_app, "worker", "--once").output.strip() == "Processed 0 deliveries."


def test_failures_are_retried_with_backoff_then_marked_failed(webhook_app: Flask) -> None:
    with freeze_time("2026-11-28 10:00:00") as clock, webhook_app.app_context():
        delivery_id = queue(webhook_app, {"id": "a", "members": ["1"]})
        drop_group_behind_the_stores_back(webhook_app)
        box = inbox(webhook_app)
        for attempt in range(1, MAX_ATTEMPTS + 1):
            worker = f"w{attempt}"
            assert box.claim(worker) == delivery_id
            status = box.process(delivery_id, worker)
            row = box.get(delivery_id)
            assert row.attempts == attempt
            assert "does not exist" in row.error
            if attempt < MAX_ATTEMPTS:
                assert status == "queued"
                assert box.claim("early") is None  # not due before its backoff
                clock.tick(timedelta(seconds=BACKOFF.seconds(attempt)))
        assert status == "failed"
        assert box.get(delivery_id).status == "failed"
        assert figure_today(webhook_app, history.DELIVERIES_FAILED) == 1  # once, when given up; not per try
        assert figure_today(webhook_app, history.DELIVERIES_APPLIED) == 0
        clock.tick(timedelta(days=1))
        assert box.claim("later") is None  # failed deliveries are kept, not retried


def test_backoff_doubles_and_is_capped() -> None:
    assert [BACKOFF.seconds(n) for n in range(1, 6)] == [5, 10, 20, 40, 80]
    assert BACKOFF.seconds(50) == 900


def test_failed_delivery_is_replayed_from_the_cli(webhook_app: Flask) -> None:
    with freeze_time("2026-11-28 10:00:00") as clock:
        delivery_id = queue(webhook_app, {"id": "a", "members": ["1"]})
        drop_group_behind_the_stores_back(webhook_app)
        for _ in range(MAX_ATTEMPTS):
            cli(webhook_app, "worker", "--once")
            clock.tick(timedelta(minutes=20))
        listing = cli(webhook_app, "deliveries", "--status", "failed")
        assert re.search(rf"^{delivery_id}\t.*\tfailed\ttest-client\tshop\titems=11\tattempts=5", listing.output, re.M)
        with webhook_app.app_context():
            webhook_app.extensions["cdp"].store.create_group("shop")
        replayed = cli(webhook_app, "replay", str(delivery_id))
        assert replayed.exit_code == 0, replayed.output
        assert cli(webhook_app, "worker", "--once").exit_code == 0
    assert memberships(webhook_app)["a"] == {"1"}
    assert "applied" in cli(webhook_app, "deliveries", "--status", "applied").output


def test_replay_refuses_applied_and_unknown_deliveries(webhook_app: Flask) -> None:
    delivery_id = post_webhook(webhook_app, {"audiences": [{"id": "a", "add": ["1"]}]}).get_json()["delivery_id"]
    refused = cli(webhook_app, "replay", str(delivery_id))
    assert refused.exit_code == 1
    assert "only failed or rejected deliveries can be replayed" in refused.output
    missing = cli(webhook_app, "replay", "9999")
    assert missing.exit_code == 1 and "9999 does not exist" in missing.output
    assert cli(webhook_app, "replay", "abc").exit_code == 2


def test_a_claim_whose_worker_died_is_taken_over_after_its_lease(webhook_app: Flask, caplog) -> None:
    with freeze_time("2026-11-28 10:00:00") as clock, webhook_app.app_context():
        delivery_id = queue(webhook_app, {"id": "a", "members": ["1"]})
        box = inbox(webhook_app)
        assert box.claim("dead-worker") == delivery_id  # and then it dies
        assert box.claim("other") is None
        listing = cli(webhook_app, "deliveries").output
        assert f"{delivery_id}\t" in listing and "\tprocessing\t" in listing
        assert "claimed_by=dead-worker\tlease_until=2026-11-28 10:02:00" in listing  # who holds it, until when
        clock.tick(timedelta(seconds=box.lease_seconds + 1))
        with caplog.at_level(logging.WARNING, logger="cdp_bridge.webhook"):
            assert box.claim("other") == delivery_id
        assert f"delivery {delivery_id}: taken over by other from dead-worker, whose lease ended at 2026-11-28 10:02:00" \
            in caplog.text
        assert box.process(delivery_id, "other") == "applied"
        # Were the first worker only slow, not dead, it must not apply the delivery again.
        assert box.process(delivery_id, "dead-worker") == "lease_lost"
        row = box.get(delivery_id)
    assert (row.status, row.attempts) == ("applied", 2)
    assert memberships(webhook_app)["a"] == {"1"}


def test_deliveries_listing_and_bad_status(webhook_app: Flask) -> None:
    assert cli(webhook_app, "deliveries").output.strip() == "No deliveries."
    queue(webhook_app, {"id": "a", "add": ["1"]})
    assert "\tqueued\t" in cli(webhook_app, "deliveries").output
    assert cli(webhook_app, "deliveries", "--status", "bogus").exit_code == 2


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_inline_worker_applies_queued_deliveries_in_the_web_process(make_app) -> None:
    app = make_app(CDP_BULK_ASYNC_THRESHOLD=10, CDP_INLINE_WORKER=True, **ACTIVATION)  # a TESTING app asks for it
    state = app.extensions["cdp"]
    with app.app_context():
        state.store.create_group("shop")
    delivery_id = queue(app, {"id": "a", "members": ["1", "2"]})
    with app.app_context():
        wait_until(lambda: state.inbox.get(delivery_id).status == "applied", "the inline worker did not apply the delivery",
                   seconds=20)
    state.inline_worker.stop()
    assert memberships(app)["a"] == {"1", "2"}


def test_inline_worker_is_off_by_default_on_postgresql_and_under_testing(make_app, database_url: str) -> None:
    serving = make_app(TESTING=False, **ACTIVATION)
    assert (serving.extensions["cdp"].inline_worker is not None) is database_url.startswith("sqlite")
    assert make_app(**ACTIVATION).extensions["cdp"].inline_worker is None  # TESTING: only when asked
    assert make_app(CDP_INLINE_WORKER=True, **ACTIVATION).extensions["cdp"].inline_worker is not None


# -- several processes over PostgreSQL ----------------------------------------------------


@pytest.fixture
def pg_site(postgres_server, tmp_path: Path):
    """A PostgreSQL database with the tables and group, and an app module for processes."""
    url = postgres_server.create_database()
    module = write_app_module(tmp_path, url, CDP_INLINE_WORKER=False, **ACTIVATION)
    app = Flask("pg_site")
    app.config.update(SQLALCHEMY_DATABASE_URI=url, CDP_INLINE_WORKER=False, **ACTIVATION)
    from cdp_bridge import CDP

    CDP(app)
    with app.app_context():
        app.extensions["cdp"].create_tables()
        app.extensions["cdp"].store.create_group("shop")
    yield app, module
    with app.app_context():
        app.extensions["cdp"].engine.dispose()


def enqueue(app: Flask, change: AudienceChange, request_id: str) -> int:
    activation = app.extensions["cdp"].settings.webhook.activations[0]
    items = len(change.add) + len(change.members or ())
    with app.app_context():
        incoming = IncomingDelivery(activation, ActivationDocument((change,), items=items), request_id, "test")
        result = app.extensions["cdp"].inbox.receive(incoming, queue=True)
    return result.delivery_id


@pytest.mark.slow
def test_two_workers_racing_apply_each_delivery_exactly_once(pg_site, tmp_path: Path) -> None:
    app, module = pg_site
    count = 200
    ids = [enqueue(app, AudienceChange(f"seg{i % 5}", add=(f"u{i}",)), f"r{i}") for i in range(count)]
    workers = [start_flask(tmp_path, module, "cdp", "worker", "--once") for _ in range(2)]
    logs = [w.communicate(timeout=120)[1] for w in workers]
    remember_output("\n".join(logs))
    assert [w.returncode for w in workers] == [0, 0], logs
    applied_lines = [int(m) for log in logs for m in re.findall(r"delivery (\d+) applied", log)]
    assert sorted(applied_lines) == sorted(ids)  # each exactly once, across both workers
    assert all(log.count("applied") > 0 for log in logs), "both workers should have taken part"
    rows = delivery_rows(app)
    assert {(d.status, d.attempts) for d in rows} == {("applied", 1)}
    assert memberships(app) == {f"seg{k}": {f"u{i}" for i in range(count) if i % 5 == k} for k in range(5)}


@pytest.mark.slow
def test_worker_killed_mid_delivery_is_taken_over_and_the_state_is_exact(pg_site, tmp_path: Path) -> None:
    app, module = pg_site
    members = tuple(f"user-{i}" for i in range(200_000))
    delivery_id = enqueue(app, AudienceChange("big", members=members), "big-1")
    doomed = start_flask(tmp_path, module, "cdp", "worker", "--lease-seconds", "2", "--poll-seconds", "60")
    state = app.extensions["cdp"]
    d = state.tables.deliveries
    deadline = time.monotonic() + 60
    with app.app_context():
        while True:
            with state.engine.connect() as conn:
                status = conn.scalar(select(d.c.status).where(d.c.id == delivery_id))
            if status == "processing":
                break
            assert time.monotonic() < deadline and doomed.poll() is None, "worker never claimed the delivery"
            time.sleep(0.01)
        doomed.send_signal(signal.SIGKILL)
        doomed.communicate(timeout=30)
        row = state.inbox.get(delivery_id)
        assert (row.status, row.attempts) == ("processing", 1), "the kill must land mid-delivery"
        assert memberships(app) == {}  # the killed transaction left nothing behind
        with state.engine.begin() as conn:  # let the lease run out without waiting for it
            conn.execute(update(d).where(d.c.id == delivery_id).values(lease_expires_at=utcnow() - timedelta(seconds=1)))
    result = run_flask(tmp_path, module, "cdp", "worker", "--once")
    assert result.returncode == 0, result.stderr
    assert f"delivery {delivery_id} applied" in result.stderr
    with app.app_context():
        row = state.inbox.get(delivery_id)
    assert (row.status, row.attempts) == ("applied", 2)
    assert memberships(app) == {"big": set(members)}


def check(app: Flask, *args: str):
    return cli(app, "check", *args)


def test_check_reports_the_queue_failures_and_whether_a_worker_is_at_work(webhook_app: Flask) -> None:
    with freeze_time("2026-11-28 10:00:00") as clock, webhook_app.app_context():
        delivery_id = queue(webhook_app, {"id": "a", "members": ["1"]})
        clock.tick(timedelta(seconds=75))
        result = check(webhook_app)
        assert result.exit_code == 0, result.output
        assert "note  queue: 1 queued (oldest received 1 min 15 s ago), 0 being applied, 0 failed" in result.output
        assert "no worker claimed a delivery in the last 10 min (never); nothing has waited that long" in result.output

        clock.tick(timedelta(minutes=10))  # still waiting, and no worker in sight: that is an outage
        result = check(webhook_app)
        assert result.exit_code == 1
        assert "FAIL  deliveries have waited over 10 min and no worker claimed one in that time (never):" \
               " is flask cdp worker running?" in result.output
        assert check(webhook_app, "--worker-minutes", "20").exit_code == 0  # the window is the operator's

        box = inbox(webhook_app)
        assert box.claim("w1") == delivery_id
        assert box.process(delivery_id, "w1") == "applied"
        clock.tick(timedelta(seconds=30))
        result = check(webhook_app)
        assert result.exit_code == 0, result.output
        assert "note  queue: 0 queued, 0 being applied, 0 failed" in result.output
        assert "ok    a worker claimed a delivery 30 s ago" in result.output

        failed = queue(webhook_app, {"id": "b", "members": ["2"]})
        state = webhook_app.extensions["cdp"]
        with state.engine.begin() as conn:
            d = state.tables.deliveries
            conn.execute(update(d).where(d.c.id == failed).values(status="failed"))
        clock.tick(timedelta(hours=2, minutes=5))
        result = check(webhook_app)
        assert result.exit_code == 0, result.output
        assert "note  queue: 0 queued, 0 being applied, 1 failed" in result.output
        assert "note  1 failed delivery: see flask cdp deliveries --status failed, then flask cdp replay ID" in result.output
        assert "no worker claimed a delivery in the last 10 min (last 2 h 5 min ago)" in result.output


@pytest.mark.slow
def test_the_lease_is_a_setting_and_the_worker_option_overrides_it(make_app) -> None:
    app = make_app(CDP_INLINE_WORKER=False, CDP_BULK_ASYNC_THRESHOLD=10, CDP_WORKER_LEASE_SECONDS=7, **ACTIVATION)
    with freeze_time("2026-11-28 10:00:00"), app.app_context():
        app.extensions["cdp"].store.create_group("shop", "Shop")
        delivery_id = queue(app, {"id": "a", "members": ["1"]})
        assert inbox(app).claim("w1") == delivery_id
        assert "lease_until=2026-11-28 10:00:07" in cli(app, "deliveries").output
    from cdp_bridge import ConfigurationError
    with pytest.raises(ConfigurationError, match="CDP_WORKER_LEASE_SECONDS: expected a whole number of seconds of at least 1"):
        make_app(CDP_WORKER_LEASE_SECONDS="0")
