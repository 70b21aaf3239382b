"""Forgetting a person (SPEC section 14): here at once, kept out for the hold window, and
deleted at Raptor by the queue workers, against a local fake of the GDPR API and the real
database (SQLite and PostgreSQL)."""

from __future__ import annotations

import logging
import re
import signal
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import select, text, update

from cdp_bridge import ValidationError
from cdp_bridge.metrics import REGISTRY
from cdp_bridge.privacy.erasure import RaptorState
from cdp_bridge.store import history
from cdp_bridge.store.tables import utcnow
from tests.support.fake_gdpr_api import FakeGdprApi
from tests.support.history import figure_today
from tests.support.processes import start_flask, write_app_module
from tests.support.webhook import ACTIVATION, cdp_of, delivery_rows, memberships, post_webhook

KEY = "gdpr-api-key-for-the-tests"
PERSON, EMAIL, OTHER = "u-forget-7", "zoe.forgotten@example.com", "u-stays-8"


@pytest.fixture
def gdpr() -> Iterator[FakeGdprApi]:
    api = FakeGdprApi()
    yield api
    api.close()


@pytest.fixture
def site(make_app, gdpr: FakeGdprApi) -> Flask:
    """A site whose person PERSON is in two segments of the activation's group and one of
    another group, and OTHER in one."""
    app = make_app(CDP_ACCOUNT_NUMBER="123456", CDP_GDPR_API_URL=gdpr.url, CDP_GDPR_API_KEY=KEY,
                   CDP_INLINE_WORKER=False, **ACTIVATION)
    with app.app_context():
        store = app.extensions["cdp"].store
        store.create_group("shop", "Shop")
        store.create_group("news", "Newsletter")
        store.add_members("news", "weekly", [PERSON, OTHER])
    body = {"audiences": [{"id": "cats", "add": [PERSON, OTHER]}, {"id": "dogs", "add": [PERSON]}]}
    assert post_webhook(app, body).status_code == 200
    return app


def cli(app: Flask, *args: str):
    return app.test_cli_runner().invoke(args=["cdp", *args])


def forget(app: Flask, **who: str):
    with app.app_context():
        return cdp_of(app).forget(**who)


def rows(app: Flask, table: str) -> list:
    state = app.extensions["cdp"]
    with app.app_context(), state.engine.connect() as conn:
        return list(conn.execute(select(getattr(state.tables, table))))


def make_due(app: Flask) -> None:
    state = app.extensions["cdp"]
    with app.app_context(), state.engine.begin() as conn:
        conn.execute(update(state.tables.gdpr_deletions).values(available_at=utcnow() - timedelta(seconds=1)))


def outcome_count(outcome: str) -> float:
    return REGISTRY.get_sample_value("cdp_erasure_requests_total", {"outcome": outcome}) or 0.0


def test_forget_removes_the_person_everywhere_at_once_and_keeps_only_hashes(site: Flask) -> None:
    made = outcome_count("made")
    receipt = forget(site, user_id=PERSON, email=EMAIL)
    assert (receipt.memberships_removed, receipt.deletions_queued) == (3, 2)
    assert memberships(site) == {"cats": {OTHER}, "dogs": set()}
    assert memberships(site, "news") == {"weekly": {OTHER}}
    with site.app_context():
        counts = {s.identifier: s.member_count for s in site.extensions["cdp"].store.list_segments()}
    assert counts == {"cats": 1, "dogs": 0, "weekly": 1}  # the counts move with the memberships
    (request,) = rows(site, "erasure_requests")
    assert re.fullmatch(r"[0-9a-f]{64}", request.user_hash) and re.fullmatch(r"[0-9a-f]{64}", request.email_hash)
    assert PERSON not in str(tuple(request)) and EMAIL not in str(tuple(request))
    assert (request.raptor_state, request.memberships_removed) == (RaptorState.QUEUED, 3)
    assert (request.hold_until - request.made_at) == timedelta(days=14)
    assert sorted(row.identifier for row in rows(site, "gdpr_deletions")) == sorted([PERSON, EMAIL])
    assert outcome_count("made") - made == 1


def test_the_workers_send_one_delete_user_per_identifier_exactly_as_raptor_documents(site: Flask,
                                                                                      gdpr: FakeGdprApi) -> None:
    forget(site, user_id=PERSON, email=EMAIL)
    result = cli(site, "worker", "--once")
    assert result.exit_code == 0, result.output
    assert "Erasure requests: Raptor accepted 2, to be tried again 0, given up 0." in result.output
    assert sorted(call.json["UserId"] for call in gdpr.calls) == sorted([PERSON, EMAIL])  # as sent, not base64
    for call in gdpr.calls:
        assert (call.method, call.path) == ("POST", "/123456/DeleteUser")
        assert call.headers["x-api-key"] == KEY and call.headers["content-type"] == "application/json"
        assert set(call.json) == {"UserId"}
    assert rows(site, "gdpr_deletions") == []  # the only place an identifier waited
    (request,) = rows(site, "erasure_requests")
    assert (request.raptor_state, request.raptor_status) == (RaptorState.ACCEPTED, 200)
    assert cli(site, "worker", "--once").output.count("Raptor accepted 0") == 1  # nothing twice
    assert len(gdpr.calls) == 2


def test_a_503_then_a_200_is_tried_again_and_recorded_once(site: Flask, gdpr: FakeGdprApi, caplog) -> None:
    accepted = outcome_count("accepted")
    forget(site, user_id=PERSON)
    gdpr.statuses = [503]
    with caplog.at_level(logging.WARNING, logger="cdp_bridge.privacy"):
        assert "to be tried again 1" in cli(site, "worker", "--once").output
    assert "erasure request 1: DeleteUser not accepted (Raptor answered 503); tried again in 60 s" in caplog.messages
    assert [row.attempts for row in rows(site, "gdpr_deletions")] == [1]
    assert "Raptor accepted 0" in cli(site, "worker", "--once").output  # not due before its backoff
    make_due(site)
    assert "Raptor accepted 1" in cli(site, "worker", "--once").output
    assert [call.json["UserId"] for call in gdpr.calls] == [PERSON, PERSON]
    (request,) = rows(site, "erasure_requests")
    assert (request.raptor_state, request.raptor_status) == (RaptorState.ACCEPTED, 200)
    assert outcome_count("accepted") - accepted == 1
    assert rows(site, "gdpr_deletions") == []
    assert (figure_today(site, history.ERASURES_REQUESTED), figure_today(site, history.ERASURES_ACCEPTED)) == (1, 1)


@pytest.mark.parametrize("status", [400, 401])
def test_a_refusal_is_given_up_at_once_with_one_error_naming_no_one(site: Flask, gdpr: FakeGdprApi, caplog,
                                                                    status: int) -> None:
    forget(site, email=EMAIL)
    gdpr.statuses = [status]
    with caplog.at_level(logging.DEBUG):
        assert "given up 1" in cli(site, "worker", "--once").output
    errors = [record.getMessage() for record in caplog.records if record.levelno >= logging.ERROR]
    assert errors == [f"erasure request 1: Raptor's GDPR API was not asked to delete one identifier: Raptor answered"
                      f" {status} after 1 try (given up; see docs/privacy.md)"]
    assert not any(EMAIL in record.getMessage() for record in caplog.records)
    assert rows(site, "gdpr_deletions") == [] and len(gdpr.calls) == 1
    (request,) = rows(site, "erasure_requests")
    assert (request.raptor_state, request.raptor_status) == (RaptorState.GIVEN_UP, status)
    assert (figure_today(site, history.ERASURES_GIVEN_UP), figure_today(site, history.ERASURES_ACCEPTED)) == (1, 0)
    check = cli(site, "check")
    assert "WARN  1 erasure request given up at Raptor" in check.output
    assert EMAIL not in check.output


def test_a_raptor_that_never_answers_is_asked_again_until_the_give_up_days(site: Flask, gdpr: FakeGdprApi) -> None:
    forget(site, user_id=PERSON)
    gdpr.hold()
    with site.app_context():
        job = next(job for job in site.extensions["cdp"].queue_jobs() if job.name == "erasure requests")
        job.api = type(job.api)(**{**job.api.__dict__, "timeout": 0.3})  # a short wait for the test
        assert job.run_due(lambda: "w1", lambda: False).retried == 1
        state = site.extensions["cdp"]
        with state.engine.begin() as conn:  # a week later, still no answer
            conn.execute(update(state.tables.gdpr_deletions).values(queued_at=utcnow() - timedelta(days=7, seconds=1),
                                                                    available_at=utcnow()))
        assert job.run_due(lambda: "w1", lambda: False).given_up == 1
        job.close()
    gdpr.release()
    (request,) = rows(site, "erasure_requests")
    assert request.raptor_state == RaptorState.GIVEN_UP and request.raptor_status is None
    assert rows(site, "gdpr_deletions") == []


def test_during_the_hold_a_delivery_is_applied_without_the_person_and_counts_them_forgotten(site: Flask) -> None:
    forget(site, user_id=PERSON)
    body = {"audiences": [{"id": "cats", "add": [PERSON, "u-new-1"]}, {"id": "birds", "members": [PERSON, "u-new-2"]}]}
    answer = post_webhook(site, body).get_json()
    assert answer["status"] == "applied" and answer["rejected_by_reason"] == {"forgotten": 2}
    assert PERSON not in str(answer)  # no sample: it would show the id
    assert memberships(site) == {"cats": {OTHER, "u-new-1"}, "dogs": set(), "birds": {"u-new-2"}}
    assert delivery_rows(site)[0].rejected_count == 2
    # A queued (large) delivery is held back the same way when a worker applies it.
    big = {"audiences": [{"id": "dogs", "add": [PERSON, *[f"d-{n}" for n in range(120)]]}]}
    queued = post_webhook(site, big)
    assert queued.status_code == 202
    assert cli(site, "worker", "--once").exit_code == 0
    assert PERSON not in memberships(site)["dogs"] and len(memberships(site)["dogs"]) == 120
    with site.app_context():
        delivery = site.extensions["cdp"].inbox.get(queued.get_json()["delivery_id"])
    assert (delivery.status, delivery.rejected.by_reason) == ("applied", {"forgotten": 1})
    # Once the hold ends, the person may come back.
    state = site.extensions["cdp"]
    with site.app_context(), state.engine.begin() as conn:
        conn.execute(update(state.tables.erasure_requests).values(hold_until=utcnow() - timedelta(seconds=1)))
    assert post_webhook(site, {"audiences": [{"id": "cats", "add": [PERSON]}]}).get_json()["applied"] == 1
    assert PERSON in memberships(site)["cats"]


def test_no_row_and_no_log_line_holds_the_identifier(site: Flask, gdpr: FakeGdprApi, database_url: str, caplog,
                                                     tmp_path: Path) -> None:
    post_webhook(site, {"audiences": [{"id": "cats", "add": ["u-other-9"]}]})  # a delivery after, with others
    with caplog.at_level(logging.DEBUG):  # every logger, as an operator debugging would
        forget(site, user_id=PERSON, email=EMAIL)
        assert cli(site, "worker", "--once").exit_code == 0
    assert not [record.getMessage() for record in caplog.records
                if PERSON in record.getMessage() or EMAIL in record.getMessage()]
    state = site.extensions["cdp"]
    with site.app_context():
        state.engine.dispose()
    if database_url.startswith("sqlite"):
        files = list(Path(database_url.removeprefix("sqlite:///")).parent.glob("test.sqlite3*"))
        assert files and not [f.name for f in files if PERSON.encode() in f.read_bytes() or EMAIL.encode() in f.read_bytes()]
    with site.app_context(), state.engine.connect() as conn:
        for table in state.tables.all():
            dump = str(conn.execute(select(table)).all())
            assert PERSON not in dump and EMAIL not in dump, table.name
        if conn.dialect.name == "postgresql":  # and no dead tuple a VACUUM has not reclaimed yet is in a table either
            assert conn.scalar(text("SELECT count(*) FROM cdp_memberships WHERE user_id = :p"), {"p": PERSON}) == 0


def test_bad_calls_change_nothing_and_say_what_was_wrong(site: Flask) -> None:
    before = memberships(site)
    for who, message in [({}, "forget: give a user id, an email, or both"),
                         ({"user_id": "bad\x07id"}, "user id"),
                         ({"user_id": PERSON, "email": "no-at-sign.example.com"}, "email: expected an address"),
                         ({"email": "two words@example.com"}, "email: expected an address")]:
        with pytest.raises(ValidationError, match=re.escape(message)) as caught:
            forget(site, **who)
        assert PERSON not in str(caught.value) and "no-at-sign" not in str(caught.value)
    assert memberships(site) == before and rows(site, "erasure_requests") == [] and rows(site, "gdpr_deletions") == []
    empty = cli(site, "forget")
    assert empty.exit_code == 2 and "give --user-id, --email, or both" in empty.output
    bad = cli(site, "forget", "--email", "nobody")
    assert bad.exit_code == 2 and "email: expected an address such as name@example.com" in bad.output
    assert "nobody" not in bad.output.replace("name@example.com", "")


def test_the_command_says_what_it_did_and_whether_raptor_was_asked(make_app) -> None:
    app = make_app(CDP_ACCOUNT_NUMBER="123456", CDP_INLINE_WORKER=False)  # no CDP_GDPR_API_KEY
    with app.app_context():
        app.extensions["cdp"].store.create_group("news")
        app.extensions["cdp"].store.add_members("news", "weekly", [PERSON])
    result = cli(app, "forget", "--user-id", PERSON)
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        "Erasure request 1: 1 membership removed; deliveries cannot add the person back, and no event names them,"
        " for 14 days.",
        "Raptor was not asked: set CDP_GDPR_API_KEY (and CDP_ACCOUNT_NUMBER) to have it delete the person."]
    assert PERSON not in result.output
    assert [row.raptor_state for row in rows(app, "erasure_requests")] == [RaptorState.NOT_ASKED]
    assert rows(app, "gdpr_deletions") == []


def test_forget_needs_the_apps_secret_key(make_app) -> None:
    app = make_app(SECRET_KEY=None)
    with app.app_context(), pytest.raises(Exception, match="SECRET_KEY: required to forget a person"):
        cdp_of(app).forget(user_id=PERSON)


@pytest.mark.slow
def test_a_worker_killed_mid_send_loses_no_delete_user(site: Flask, gdpr: FakeGdprApi, database_url: str,
                                                       tmp_path: Path) -> None:
    """A worker is SIGKILLed while Raptor holds its DeleteUser; another worker sends it
    again once the lease ends, and the request is accepted."""
    forget(site, user_id=PERSON)
    module = write_app_module(tmp_path, database_url, SECRET_KEY="test", CDP_ACCOUNT_NUMBER="123456",
                              CDP_GDPR_API_URL=gdpr.url, CDP_GDPR_API_KEY=KEY, CDP_INLINE_WORKER=False)
    gdpr.hold()
    first = start_flask(tmp_path, module, "cdp", "worker", "--poll-seconds", "0.2", "--lease-seconds", "2",
                        log_file=tmp_path / "first.log")
    try:
        gdpr.wait_for(lambda api: len(api.calls) == 1)
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    finally:
        if first.poll() is None:
            first.kill()
    gdpr.release()
    assert [row.identifier for row in rows(site, "gdpr_deletions")] == [PERSON]  # still waiting, leased to the dead
    second = start_flask(tmp_path, module, "cdp", "worker", "--poll-seconds", "0.2", "--lease-seconds", "2",
                         log_file=tmp_path / "second.log")
    try:
        deadline = time.monotonic() + 30
        while rows(site, "gdpr_deletions") and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(10)
    assert rows(site, "gdpr_deletions") == []
    assert [call.json["UserId"] for call in gdpr.calls] == [PERSON, PERSON]
    assert rows(site, "erasure_requests")[0].raptor_state == RaptorState.ACCEPTED
    assert "DeleteUser call 1: taken over by " in (tmp_path / "second.log").read_text()
