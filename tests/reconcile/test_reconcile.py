"""flask cdp reconcile against a local fake CDP API, on SQLite and PostgreSQL (SPEC section 15)."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select

from cdp_bridge.metrics import REGISTRY
from cdp_bridge.signals import memberships_changed
from cdp_bridge.store import history
from tests.support.fake_cdp_api import FakeCdpApi
from tests.support.fake_membership_api import Reply
from tests.support.history import figure_today
from tests.support.seed import run
from tests.support.webhook import memberships, post_webhook

TRUTH_VIP = ["u1", "u2", "u3", "n1", "n2", "n3"]  # n1-n3 missing here; x1, x2 extra here


def truth(cdp_api: FakeCdpApi) -> None:
    cdp_api.audiences = {"vip": ("VIP", TRUTH_VIP), "cats": ("Cats", ["c1", "c2"])}
    cdp_api.sequences = {"vip": 41}


def counter(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_a_drifted_segment_is_repaired_exactly_with_one_signal(site: Flask, cdp_api: FakeCdpApi, receive: Any,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    truth(cdp_api)
    received = receive(memberships_changed)
    added_before = counter("cdp_reconcile_changes_total", change="added")
    runs_before = counter("cdp_reconcile_runs_total", outcome="ok")
    with caplog.at_level(logging.INFO, logger="cdp_bridge.reconcile"):
        result = run(site, "reconcile")
    assert result.exit_code == 0, result.output
    assert "reconcile of group shop: vip: added 3, removed 2, unchanged 3, sequence 41" in caplog.text
    assert counter("cdp_reconcile_runs_total", outcome="ok") == runs_before + 1
    assert memberships(site) == {"vip": set(TRUTH_VIP), "cats": {"c1", "c2"}}
    assert "vip: added 3, removed 2, unchanged 3, sequence 41" in result.output
    assert "cats: added 0, removed 0, unchanged 2, sequence -" in result.output
    assert len(received) == 1  # cats did not change: no signal for it
    signal = received[0]
    assert (signal["group"], signal["segment"], signal["source"]) == ("shop", "vip", "reconcile")
    assert sorted(signal["added"]) == ["n1", "n2", "n3"] and sorted(signal["removed"]) == ["x1", "x2"]
    assert signal["sender"] is site
    assert counter("cdp_reconcile_changes_total", change="added") == added_before + 3
    with site.app_context():
        state = site.extensions["cdp"]
        last = state.reconciler().last_reconciles("shop")
        assert (last["vip"].added, last["vip"].removed, last["vip"].unchanged, last["vip"].sequence) == (3, 2, 3, 41)
        s = state.tables.segments
        with state.engine.connect() as conn:
            assert conn.scalar(select(s.c.member_count).where(s.c.identifier == "vip")) == 6  # the count kept too
            assert conn.scalar(select(s.c.last_sequence).where(s.c.identifier == "vip")) == 41
    assert (figure_today(site, history.RECONCILES_OK), figure_today(site, history.RECONCILE_CHANGES)) == (1, 5)
    again = run(site, "reconcile")
    assert "vip: added 0, removed 0, unchanged 6, sequence 41" in again.output and len(received) == 1
    assert (figure_today(site, history.RECONCILES_OK), figure_today(site, history.RECONCILE_CHANGES)) == (2, 5)
    # the headers of section 9, the key never printed
    assert cdp_api.asked[0][1]["x-activation-id"] == "reconcile-activation"
    assert "cdp-api-key" not in result.output


def test_dry_run_changes_nothing_and_says_what_it_would(site: Flask, cdp_api: FakeCdpApi, receive: Any) -> None:
    truth(cdp_api)
    received = receive(memberships_changed)
    before = memberships(site)
    result = run(site, "reconcile", "--dry-run")
    assert result.exit_code == 0, result.output
    assert "vip: would add 3, would remove 2, unchanged 3, sequence 41" in result.output
    assert "dry run: nothing changed" in result.output
    assert memberships(site) == before and received == []
    with site.app_context():
        assert site.extensions["cdp"].reconciler().last_reconciles("shop") == {}
    assert figure_today(site, history.RECONCILES_OK) == 0  # the dashboard counts what was done


def test_bad_answers_change_nothing_for_their_segment_and_the_run_goes_on(site: Flask, cdp_api: FakeCdpApi) -> None:
    post_webhook(site, {"audiences": [{"id": "dogs", "members": ["d1"]}, {"id": "birds", "members": ["b1"]},
                                      {"id": "fish", "members": ["f1"]}]})
    cdp_api.audiences = {"vip": ("VIP", TRUTH_VIP), "cats": ("Cats", ["c9"]), "dogs": ("Dogs", ["d2"]),
                         "birds": ("Birds", ["b2"]), "fish": ("Fish", ["f2"]), "newts": ("Newts", ["n"])}
    cdp_api.replies = {
        "/api/v3/membership/cats": Reply(404, b'{"error": "not found"}'),
        "/api/v3/membership/dogs": Reply(body=b'{"profiles": ["d2", "d3"', content_length=False),  # cut short
        "/api/v3/membership/birds": Reply(body=b'{"profiles": [' + b'"b2",' * 400 + b'"b3"]}'),  # over the limit below
        "/api/v3/membership/fish": Reply(body=b'{"people": ["f2"]}'),  # no list of profiles
    }
    site.extensions["cdp"].settings = _with_max_bytes(site, 1024)
    before = memberships(site)
    failed_before = counter("cdp_reconcile_runs_total", outcome="failed")
    result = run(site, "reconcile")
    assert result.exit_code == 1
    assert counter("cdp_reconcile_runs_total", outcome="failed") == failed_before + 1
    assert (figure_today(site, history.RECONCILES_FAILED), figure_today(site, history.RECONCILES_OK)) == (1, 0)
    out = result.output
    assert "vip: added 3, removed 2" in out  # the good one is applied
    assert "cats: FAILED, nothing changed: its members: the CDP API answered 404" in out
    assert "dogs: FAILED, nothing changed: not JSON, or cut short" in out
    assert "birds: FAILED, nothing changed: its members: the answer is larger than 1024 bytes" in out
    assert "fish: FAILED, nothing changed: no list of profiles" in out
    assert "newts: FAILED, nothing changed: the CDP's audience 'newts' (Newts) has no segment in group 'shop'" in out
    after = memberships(site)
    assert {k: v for k, v in after.items() if k != "vip"} == {k: v for k, v in before.items() if k != "vip"}
    with site.app_context():
        last = site.extensions["cdp"].reconciler().last_reconciles("shop")
    assert last["cats"].error is not None and "404" in last["cats"].error


def test_refused_credentials_fail_the_run_naming_it(site: Flask, cdp_api: FakeCdpApi) -> None:
    truth(cdp_api)
    cdp_api.replies = {"/api/v3/audiences": Reply(401, b'{"error": "unauthorized"}')}
    before = memberships(site)
    result = run(site, "reconcile")
    assert result.exit_code == 1
    assert "FAILED: the audiences: the CDP API refused the credentials (401)" in result.output
    assert memberships(site) == before


def test_other_answer_shapes_are_read(site: Flask, cdp_api: FakeCdpApi) -> None:
    cdp_api.replies = {
        "/api/v3/audiences": Reply(body=b'[{"audienceId": "vip", "name": "VIP"}]'),
        "/api/v3/membership/vip": Reply(body=b'{"sequence": 7, "members": ["u1", {"value": "n1"}, {"id": 42}]}'),
    }
    result = run(site, "reconcile")
    assert result.exit_code == 0, result.output
    assert memberships(site)["vip"] == {"u1", "n1", "42"}


def test_a_host_reader_reads_its_own_shape(site: Flask, cdp_api: FakeCdpApi) -> None:
    from cdp_bridge import MembershipList
    from tests.support.webhook import cdp_of

    cdp_api.audiences = {"vip": ("VIP", [])}
    cdp_api.replies = {"/api/v3/membership/vip": Reply(body=b'{"result": {"ids": "u1,n7"}, "seq": 9}')}

    @cdp_of(site).membership_list_reader
    def comma_list(document: Any) -> MembershipList | None:
        if isinstance(document, dict) and "result" in document:
            return MembershipList(document["result"]["ids"].split(","), document["seq"])
        return None

    result = run(site, "reconcile")
    assert result.exit_code == 0, result.output
    assert memberships(site)["vip"] == {"u1", "n7"} and "sequence 9" in result.output


def test_a_delivery_arriving_during_a_reconcile_is_applied_after_it(site: Flask, cdp_api: FakeCdpApi) -> None:
    truth(cdp_api)
    cdp_api.release = threading.Event()
    reconciled: list[Any] = []
    reconcile = threading.Thread(target=lambda: reconciled.append(run(site, "reconcile")))
    reconcile.start()
    assert cdp_api.sending.wait(30)  # the reconcile holds the group and is reading vip's members
    answers: list[Any] = []
    delivery = threading.Thread(target=lambda: answers.append(
        post_webhook(site, {"audiences": [{"id": "vip", "add": ["late1"], "remove": ["u1"]}]})))
    delivery.start()
    time.sleep(0.5)  # give the delivery time to reach the lock (on PostgreSQL) or the write lock (SQLite)
    cdp_api.release.set()
    reconcile.join(60)
    delivery.join(60)
    assert reconciled[0].exit_code == 0, reconciled[0].output
    assert answers[0].status_code == 200, answers[0].get_json()
    # applied after the reconcile: its add and remove stand; before it, the replace would have undone both
    assert memberships(site)["vip"] == (set(TRUTH_VIP) | {"late1"}) - {"u1"}


def _with_max_bytes(app: Flask, max_bytes: int) -> Any:
    from dataclasses import replace

    settings = app.extensions["cdp"].settings
    return replace(settings, reconcile=replace(settings.reconcile, max_bytes=max_bytes))


def test_the_back_office_shows_each_segments_last_reconcile(site: Flask, cdp_api: FakeCdpApi) -> None:
    from tests.support.webhook import cdp_of

    truth(cdp_api)
    assert run(site, "reconcile").exit_code == 0
    cdp_of(site).admin_guard(lambda: True)
    page = site.test_client().get("/cdp/admin/groups/shop").get_data(as_text=True)
    assert "Last reconcile" in page
    assert "+3 −2, 3 unchanged, sequence 41" in page and "+0 −0, 2 unchanged, sequence —" in page


def test_the_worker_runs_the_reconcile_on_its_schedule(make_app: Any, cdp_api: FakeCdpApi) -> None:
    from datetime import timedelta

    from sqlalchemy import update as sql_update

    from tests.support.fake_cdp_api import settings
    from tests.support.webhook import ACTIVATION

    app = make_app(CDP_INLINE_WORKER=False, CDP_RECONCILE_SCHEDULE="30 3 * * *", **ACTIVATION, **settings(cdp_api))
    with app.app_context():
        app.extensions["cdp"].store.create_group("shop", "Shop")
    post_webhook(app, {"audiences": [{"id": "vip", "members": ["u1", "x1"]}]})
    cdp_api.audiences = {"vip": ("VIP", ["u1", "n1"])}
    first = run(app, "worker", "--once")
    assert "reconcile: not due" in first.output and memberships(app)["vip"] == {"u1", "x1"}  # the schedule starts now
    with app.app_context():
        state = app.extensions["cdp"]
        runs = state.tables.schedule_runs
        with state.engine.begin() as conn:  # as if it last ran two days ago: 03:30 UTC has passed since
            last = conn.scalar(select(runs.c.last_run_at))
            conn.execute(sql_update(runs).values(last_run_at=last - timedelta(days=2)))
    second = run(app, "worker", "--once")
    assert "reconcile of shop: ok" in second.output, second.output
    assert memberships(app)["vip"] == {"u1", "n1"}
    third = run(app, "worker", "--once")
    assert "reconcile: not due" in third.output  # taken: the next run is tomorrow's
