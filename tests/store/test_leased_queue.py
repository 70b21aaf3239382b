"""The one leased queue that the delivery inbox and the buy outbox share: claim, lease,
hold, release with backoff, give up, forget, and the metrics, on SQLite and PostgreSQL.
The inbox's and the outbox's own tests exercise it through them; these name what a new
queue (the erasure requests) gets from it."""

from __future__ import annotations

import logging
from datetime import timedelta

from flask import Flask
from freezegun import freeze_time
from sqlalchemy import Column, DateTime, Integer, MetaData, String, Table, insert, select

from cdp_bridge.metrics import REGISTRY
from cdp_bridge.store.leased_queue import Backoff, LeasedQueue, Released, Statuses
from cdp_bridge.store.tables import utcnow

STATUSES = Statuses(waiting="waiting", claimed="working", given_up="given_up")


def a_table(name: str, *, with_status: bool) -> Table:
    columns = [Column("id", Integer, primary_key=True), Column("attempts", Integer, nullable=False, default=0),
               Column("available_at", DateTime, nullable=False), Column("claimed_by", String(255)),
               Column("lease_expires_at", DateTime), Column("problem", String(20)), Column("what", String(50))]
    if with_status:
        columns += [Column("status", String(20), nullable=False), Column("finished_at", DateTime)]
    return Table(name, MetaData(), *columns)


def queue_of(app: Flask, *, with_status: bool, rows: int, name: str = "test") -> LeasedQueue:
    state = app.extensions["cdp"]
    with app.app_context():
        engine = state.engine
    table = a_table(f"test_queue_{name}", with_status=with_status)
    table.create(engine)
    now = utcnow()
    extra = {"status": "waiting"} if with_status else {}
    with engine.begin() as conn:
        conn.execute(insert(table), [{"what": f"row {n}", "available_at": now, "attempts": 0, **extra}
                                     for n in range(1, rows + 1)])
    return LeasedQueue(name, engine, table, lease_seconds=60, max_attempts=3, backoff=Backoff(10, 25),
                       error_column="problem", statuses=STATUSES if with_status else None, item="thing")


def rows(queue: LeasedQueue) -> list[tuple]:
    t = queue.table
    with queue.engine.connect() as conn:
        return [tuple(row) for row in conn.execute(select(t.c.id, t.c.attempts, t.c.claimed_by, t.c.problem)
                                                   .order_by(t.c.id))]


def figure(name: str, queue: str) -> float:
    return REGISTRY.get_sample_value(f"cdp_queue_{name}_total", {"queue": queue}) or 0.0


def test_the_backoff_doubles_up_to_its_cap() -> None:
    assert [Backoff(5, 900).seconds(n) for n in range(1, 6)] == [5, 10, 20, 40, 80]
    assert Backoff(5, 900).seconds(50) == 900 and Backoff(30, 900).seconds(1) == 30


def test_claims_are_disjoint_oldest_first_and_count_a_try(app: Flask) -> None:
    queue = queue_of(app, with_status=False, rows=5, name="claims")
    before = figure("claims", "claims")
    first = queue.claim("w1", 2, [queue.table.c.what])
    second = queue.claim("w2", 10)
    assert [(row.id, row.attempts, row.what) for row in first] == [(1, 1, "row 1"), (2, 1, "row 2")]
    assert [row.id for row in second] == [3, 4, 5]
    assert queue.claim("w3", 10) == []  # all leased
    assert figure("claims", "claims") - before == 5
    assert [row[2] for row in rows(queue)] == ["w1", "w1", "w2", "w2", "w2"]


def test_a_failed_row_waits_its_backoff_then_is_given_up_or_deleted(app: Flask) -> None:
    for with_status in (True, False):
        name = f"release_{with_status}".lower()
        queue = queue_of(app, with_status=with_status, rows=1, name=name)
        retries, given_up = figure("retries", name), figure("given_up", name)
        with freeze_time(utcnow()) as clock:
            waits = []
            for attempt in range(1, 4):
                (row,) = queue.claim(f"w{attempt}")
                released = queue.release(row.id, f"w{attempt}", "a problem longer than its column")
                waits.append((released.outcome, released.attempts, released.retry_in))
                assert queue.claim("early") == []  # not due before its backoff
                clock.tick(timedelta(seconds=released.retry_in + 1))
        assert waits == [(Released.RETRY, 1, 10), (Released.RETRY, 2, 20), (Released.GAVE_UP, 3, 0)]
        assert (figure("retries", name) - retries, figure("given_up", name) - given_up) == (2, 1)
        if with_status:  # kept, as given up, with its error cut to its column
            assert rows(queue) == [(1, 3, None, "a problem longer tha")]
            with queue.engine.connect() as conn:
                assert conn.scalar(select(queue.table.c.status)) == "given_up"
        else:
            assert rows(queue) == []


def test_a_row_that_can_never_succeed_is_given_up_at_once(app: Flask) -> None:
    queue = queue_of(app, with_status=False, rows=1, name="refused")
    (row,) = queue.claim("w1")
    assert queue.release(row.id, "w1", "refused", give_up=True).outcome == Released.GAVE_UP
    assert rows(queue) == []


def test_a_dead_workers_rows_are_taken_over_and_its_late_release_changes_nothing(app: Flask, caplog) -> None:
    queue = queue_of(app, with_status=True, rows=1, name="takeover")
    takeovers = figure("takeovers", "takeover")
    with freeze_time(utcnow()) as clock:
        (row,) = queue.claim("dead")
        assert queue.claim("other") == []
        clock.tick(timedelta(seconds=61))
        with caplog.at_level(logging.WARNING, logger="cdp_bridge.queue"):
            (taken,) = queue.claim("other")
        assert (taken.id, taken.attempts) == (row.id, 2)
        assert any(message.startswith(f"thing {row.id}: taken over by other from dead, whose lease ended at ")
                   for message in caplog.messages)
        assert figure("takeovers", "takeover") - takeovers == 1
        assert queue.release(row.id, "dead", "late").outcome == Released.LEASE_LOST
        with queue.engine.begin() as conn:
            assert queue.hold(conn, row.id, "dead") is None
            held = queue.hold(conn, row.id, "other")
        assert held is not None and held.what == "row 1"
    assert rows(queue) == [(1, 2, "other", None)]


def test_forget_deletes_a_done_row(app: Flask) -> None:
    queue = queue_of(app, with_status=False, rows=2, name="forget")
    first, _ = queue.claim("w", 2)
    queue.forget(first.id)
    assert [row[0] for row in rows(queue)] == [2]
