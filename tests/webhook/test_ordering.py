"""Sequences order deliveries per audience: stale ones are skipped, replays change nothing."""

from __future__ import annotations

from flask import Flask

from tests.support.webhook import memberships, post_webhook


def send(app: Flask, *audiences, request_id: str | None = None) -> dict:
    body = {"audiences": list(audiences)}
    if request_id:
        body["request_id"] = request_id
    response = post_webhook(app, body)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def test_older_sequence_arriving_late_is_skipped_as_stale(webhook_app: Flask) -> None:
    send(webhook_app, {"id": "a", "members": ["1", "2"], "sequence": 5})
    late = send(webhook_app, {"id": "a", "members": ["9"], "sequence": 4})
    assert (late["applied"], late["stale"]) == (0, 1)
    assert memberships(webhook_app) == {"a": {"1", "2"}}


def test_equal_sequence_is_stale_too(webhook_app: Flask) -> None:
    send(webhook_app, {"id": "a", "add": ["1"], "sequence": 5})
    assert send(webhook_app, {"id": "a", "add": ["2"], "sequence": 5})["stale"] == 1
    assert memberships(webhook_app) == {"a": {"1"}}


def test_stale_change_does_not_touch_metadata(webhook_app: Flask) -> None:
    send(webhook_app, {"id": "a", "name": "New name", "add": ["1"], "sequence": 5})
    send(webhook_app, {"id": "a", "name": "Old name", "sequence": 3})
    with webhook_app.app_context():
        (segment,) = webhook_app.extensions["cdp"].store.list_segments("shop")
    assert (segment.name, segment.last_sequence) == ("New name", 5)


def test_newer_sequence_applies(webhook_app: Flask) -> None:
    send(webhook_app, {"id": "a", "members": ["1"], "sequence": 1})
    send(webhook_app, {"id": "a", "add": ["2"], "sequence": 2})
    send(webhook_app, {"id": "a", "remove": ["1"], "sequence": 3})
    assert memberships(webhook_app) == {"a": {"2"}}


def test_out_of_order_deliveries_end_in_the_newest_state(webhook_app: Flask) -> None:
    changes = [
        {"id": "a", "members": ["1", "2", "3"], "sequence": 10},
        {"id": "a", "remove": ["2"], "sequence": 11},
        {"id": "a", "add": ["4"], "sequence": 12},
        {"id": "a", "members": ["7"], "sequence": 13},
        {"id": "a", "add": ["8"], "sequence": 14},
    ]
    for change in [changes[3], changes[0], changes[4], changes[1], changes[2]]:
        send(webhook_app, change)
    # 13 (members 7) then 14 (add 8) are the newest; 10-12 arrived late and were stale.
    assert memberships(webhook_app) == {"a": {"7", "8"}}


def test_late_change_cannot_bring_back_a_deleted_audience(webhook_app: Flask) -> None:
    send(webhook_app, {"id": "a", "members": ["1"], "sequence": 1})
    send(webhook_app, {"id": "a", "deleted": True, "sequence": 5})
    assert memberships(webhook_app) == {}
    late = send(webhook_app, {"id": "a", "add": ["2"], "sequence": 4})
    assert late["stale"] == 1
    assert memberships(webhook_app) == {}
    send(webhook_app, {"id": "a", "add": ["3"], "sequence": 6})
    assert memberships(webhook_app) == {"a": {"3"}}


def test_stale_delete_does_not_remove_a_newer_audience(webhook_app: Flask) -> None:
    send(webhook_app, {"id": "a", "members": ["1"], "sequence": 9})
    assert send(webhook_app, {"id": "a", "deleted": True, "sequence": 8})["stale"] == 1
    assert memberships(webhook_app) == {"a": {"1"}}


def test_changes_without_sequence_always_apply(webhook_app: Flask) -> None:
    send(webhook_app, {"id": "a", "members": ["1"], "sequence": 9})
    send(webhook_app, {"id": "a", "add": ["2"]})
    assert memberships(webhook_app) == {"a": {"1", "2"}}


def test_replayed_deliveries_leave_the_state_unchanged(webhook_app: Flask) -> None:
    first = {"id": "a", "members": ["1", "2"], "sequence": 1}
    second = {"id": "a", "remove": ["1"], "sequence": 2}
    send(webhook_app, first, request_id="r1")
    send(webhook_app, second, request_id="r2")
    assert send(webhook_app, first, request_id="r1")["status"] == "duplicate"
    assert send(webhook_app, first)["stale"] == 1  # the same change under a new id is stale
    assert memberships(webhook_app) == {"a": {"2"}}


def test_deleting_an_unknown_audience_is_harmless(webhook_app: Flask) -> None:
    answer = send(webhook_app, {"id": "never", "deleted": True})
    assert answer["applied"] == 1
    assert memberships(webhook_app) == {}


def test_adding_present_and_removing_absent_members_changes_nothing(webhook_app: Flask) -> None:
    send(webhook_app, {"id": "a", "members": ["1"]})
    send(webhook_app, {"id": "a", "add": ["1"], "remove": ["9"]})
    assert memberships(webhook_app) == {"a": {"1"}}


def test_members_then_add_then_remove_within_one_audience(webhook_app: Flask) -> None:
    send(webhook_app, {"id": "a", "members": ["1", "2"], "add": ["3"], "remove": ["2"]})
    assert memberships(webhook_app) == {"a": {"1", "3"}}
