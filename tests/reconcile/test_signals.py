"""cdp_bridge.signals: sent after commit, with exactly the ids that changed, from every path (SPEC section 15)."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import update

from cdp_bridge.signals import delivery_failed, memberships_changed, person_forgotten
from tests.support.seed import run
from tests.support.webhook import memberships, post_webhook


def test_an_add_of_existing_members_sends_nothing_and_a_mixed_one_only_the_new(site: Flask, receive: Any) -> None:
    received = receive(memberships_changed)
    assert post_webhook(site, {"audiences": [{"id": "vip", "add": ["u1", "u2"]}]}).status_code == 200
    assert received == []
    post_webhook(site, {"audiences": [{"id": "vip", "add": ["u1", "new1"], "remove": ["u2", "ghost"]}]})
    assert [(r["segment"], r["added"], r["removed"], r["source"]) for r in received] == [
        ("vip", ["new1"], ["u2"], "webhook")]


def test_a_replace_sends_what_it_changed(site: Flask, receive: Any) -> None:
    received = receive(memberships_changed)
    post_webhook(site, {"audiences": [{"id": "cats", "members": ["c2", "c3"]}]})
    assert [(r["group"], r["segment"], r["added"], r["removed"]) for r in received] == [("shop", "cats", ["c3"], ["c1"])]


def test_a_raising_receiver_is_logged_by_name_and_the_change_stays(site: Flask, receive: Any,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    def broken_receiver(sender: Any, **arguments: Any) -> None:
        raise RuntimeError("mail server down")

    memberships_changed.connect(broken_receiver)
    try:
        later = receive(memberships_changed)  # connected after the broken one: still called
        with caplog.at_level(logging.ERROR, logger="cdp_bridge.signals"):
            answer = post_webhook(site, {"audiences": [{"id": "vip", "add": ["n9"]}]})
    finally:
        memberships_changed.disconnect(broken_receiver)
    assert answer.status_code == 200
    assert "n9" in memberships(site)["vip"]
    assert len(later) == 1
    assert any("broken_receiver" in record.getMessage() and "cdp-memberships-changed" in record.getMessage()
               for record in caplog.records)


def test_a_queued_delivery_sends_from_the_worker_that_applied_it(site: Flask, receive: Any) -> None:
    received = receive(memberships_changed)
    ids = [f"q{i}" for i in range(12)]
    assert post_webhook(site, {"audiences": [{"id": "vip", "add": ids}]}).status_code == 202
    assert received == []  # not applied yet: nothing sent
    assert run(site, "worker", "--once").exit_code == 0
    assert [(r["segment"], sorted(r["added"]), r["source"]) for r in received] == [("vip", sorted(ids), "webhook")]


def test_forget_sends_the_removed_memberships_and_person_forgotten(site: Flask, receive: Any) -> None:
    changed, forgotten = receive(memberships_changed), receive(person_forgotten)
    with site.app_context():
        receipt = site.extensions["cdp"].erasures.forget("u1")
    assert [(r["segment"], r["removed"], r["source"]) for r in changed] == [("vip", ["u1"], "forget")]
    assert [r["request_id"] for r in forgotten] == [receipt.request_id]


def test_changes_by_hand_are_sent_as_admin(site: Flask, receive: Any) -> None:
    received = receive(memberships_changed)
    with site.app_context():
        store = site.extensions["cdp"].store
        store.create_group("manual", "Manual")
        store.add_members("manual", "newsletter", ["m1", "m2"], name="Newsletter")
        store.add_members("manual", "newsletter", ["m2"])  # nothing new: nothing sent
        store.replace_members("manual", "newsletter", ["m2", "m3"])
        store.delete_segment("manual", "newsletter")
    assert [(r["segment"], r["added"], r["removed"], r["source"]) for r in received] == [
        ("newsletter", ["m1", "m2"], [], "admin"), ("newsletter", ["m3"], ["m1"], "admin"),
        ("newsletter", [], ["m2", "m3"], "admin")]


def test_a_delivery_given_up_sends_delivery_failed(site: Flask, receive: Any) -> None:
    received = receive(delivery_failed)
    answer = post_webhook(site, {"audiences": [{"id": "vip", "add": [f"f{i}" for i in range(12)]}]})
    delivery_id = answer.get_json()["delivery_id"]
    with site.app_context():
        state = site.extensions["cdp"]
        d = state.tables.deliveries
        with state.engine.begin() as conn:  # its tries used up by workers that stopped mid-delivery
            conn.execute(update(d).where(d.c.id == delivery_id).values(attempts=state.inbox.max_attempts))
    run(site, "worker", "--once")
    assert [r["delivery_id"] for r in received] == [delivery_id]
    assert "gave up" in received[0]["reason"]
