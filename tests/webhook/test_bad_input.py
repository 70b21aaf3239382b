"""Bad webhook input: each case asserts the answer and exactly what the database holds.

Before every case the group ``shop`` holds one segment ``pre`` = {1, 2}. A body refused
whole must leave exactly that; a partly bad body must apply exactly its good part.
"""

from __future__ import annotations

import json

import pytest
from flask import Flask

from tests.support.webhook import delivery_rows, memberships, post_webhook

BEFORE = {"pre": {"1", "2"}}


@pytest.fixture
def seeded(webhook_app: Flask) -> Flask:
    assert post_webhook(webhook_app, {"audiences": [{"id": "pre", "members": ["1", "2"]}]}).status_code == 200
    return webhook_app


def deep(levels: int) -> bytes:
    return b'{"audiences": ' + b"[" * levels + b"]" * levels + b"}"


# (case id, raw body, status, error code)
REFUSED_WHOLE = [
    ("empty-body", b"", 400, "invalid_json"),
    ("whitespace-body", b"   \n", 400, "invalid_json"),
    ("truncated-json", b'{"audiences": [', 400, "invalid_json"),
    ("trailing-garbage", b'{"audiences": []} x', 400, "invalid_json"),
    ("single-quotes", b"{'audiences': []}", 400, "invalid_json"),
    ("not-utf8", b'{"audiences": ["\xff\xfe"]}', 400, "invalid_json"),
    ("nan-literal-nesting-bomb", deep(100_000), 400, "invalid_json"),
    ("json-array", b"[]", 400, "invalid_payload"),
    ("json-string", b'"audiences"', 400, "invalid_payload"),
    ("json-null", b"null", 400, "invalid_payload"),
    ("json-number", b"42", 400, "invalid_payload"),
    ("audiences-missing", b'{"request_id": "x"}', 400, "invalid_payload"),
    ("audiences-not-list", b'{"audiences": {"id": "a"}}', 400, "invalid_payload"),
    ("audiences-null", b'{"audiences": null}', 400, "invalid_payload"),
    ("audiences-string", b'{"audiences": "a,b"}', 400, "invalid_payload"),
    ("request-id-number", b'{"request_id": 5, "audiences": []}', 400, "invalid_payload"),
    ("request-id-control", b'{"request_id": "a\\u0000b", "audiences": []}', 400, "invalid_payload"),
    ("request-id-too-long", json.dumps({"request_id": "r" * 256, "audiences": []}).encode(), 400, "invalid_payload"),
    ("request-id-lone-surrogate", b'{"request_id": "r\\ud800", "audiences": []}', 400, "invalid_payload"),
    ("group-not-string", b'{"segment_group_identifier": 5, "audiences": []}', 400, "invalid_payload"),
]


@pytest.mark.parametrize(("raw", "status", "error"), [c[1:] for c in REFUSED_WHOLE], ids=[c[0] for c in REFUSED_WHOLE])
def test_body_refused_whole_changes_nothing(seeded: Flask, raw: bytes, status: int, error: str) -> None:
    response = post_webhook(seeded, raw=raw)
    assert response.status_code == status
    answer = response.get_json()
    assert answer["error"] == error
    assert answer["message"]
    assert memberships(seeded) == BEFORE
    assert len(delivery_rows(seeded)) == 1


def test_bad_idempotency_header_is_refused(seeded: Flask) -> None:
    response = post_webhook(seeded, {"audiences": []}, headers={"Idempotency-Key": "x" * 300})
    assert response.status_code == 400
    assert "Idempotency-Key" in response.get_json()["message"]
    assert len(delivery_rows(seeded)) == 1


# (case id, audiences, expected rejections as (audience, user_id or None, reason part), final state)
PARTLY_BAD = [
    ("audience-null", [None, {"id": "ok", "add": ["5"]}], [("audiences[0]", None, "JSON object")],
     {**BEFORE, "ok": {"5"}}),
    ("audiences-all-null-but-one", [{"id": "ok", "add": ["5"]}, None, None], [("audiences[1]", None, "JSON object"),
     ("audiences[2]", None, "JSON object")], {**BEFORE, "ok": {"5"}}),
    ("user-id-lone-surrogate", [{"id": "pre", "add": ["\ud800", "5"]}], [("pre", "\\ud800", "valid Unicode")],
     {"pre": {"1", "2", "5"}}),
    ("audience-id-lone-surrogate", [{"id": "a\udc00", "add": ["5"]}, {"id": "ok", "add": ["6"]}],
     [("a\\udc00", None, "valid Unicode")], {**BEFORE, "ok": {"6"}}),
    ("name-lone-surrogate", [{"id": "pre", "name": "\ud83d", "add": ["5"]}], [("pre", None, "valid Unicode")], BEFORE),
    ("description-lone-surrogate", [{"id": "pre", "description": "x\ud800"}], [("pre", None, "valid Unicode")],
     BEFORE),
    ("tag-lone-surrogate", [{"id": "pre", "tags": ["ok", "\udfff"]}], [("pre", None, "valid Unicode")], BEFORE),
    ("audience-not-object", ["pre", {"id": "ok", "add": ["5"]}], [("audiences[0]", None, "JSON object")],
     {**BEFORE, "ok": {"5"}}),
    ("audience-without-id", [{"name": "x", "add": ["5"]}], [("audiences[0]", None, "audience id is required")], BEFORE),
    ("audience-id-bool", [{"id": True, "add": ["5"]}], [("audiences[0]", None, "string or an integer")], BEFORE),
    ("audience-id-empty", [{"id": "", "add": ["5"]}], [("", None, "must not be empty")], BEFORE),
    ("audience-id-control", [{"id": "a\nb", "add": ["5"]}], [("a\nb", None, "control characters")], BEFORE),
    ("audience-id-too-long", [{"id": "a" * 256, "add": ["5"]}], [("a" * 256, None, "at most 255")], BEFORE),
    ("add-not-list", [{"id": "pre", "add": "5"}], [("pre", None, "add must be a list")], BEFORE),
    ("members-not-list", [{"id": "pre", "members": {"5": 1}}], [("pre", None, "members must be a list")], BEFORE),
    ("sequence-string", [{"id": "pre", "add": ["5"], "sequence": "7"}], [("pre", None, "sequence")], BEFORE),
    ("sequence-float", [{"id": "pre", "add": ["5"], "sequence": 7.5}], [("pre", None, "sequence")], BEFORE),
    ("sequence-negative", [{"id": "pre", "add": ["5"], "sequence": -1}], [("pre", None, "sequence")], BEFORE),
    ("sequence-huge", [{"id": "pre", "add": ["5"], "sequence": 2**70}], [("pre", None, "sequence")], BEFORE),
    ("deleted-string", [{"id": "pre", "deleted": "yes"}], [("pre", None, "deleted")], BEFORE),
    ("deleted-with-members", [{"id": "pre", "deleted": True, "add": ["5"]}], [("pre", None, "deleted audience")], BEFORE),
    ("profile-count-string", [{"id": "pre", "profile_count": "many"}], [("pre", None, "profile_count")], BEFORE),
    ("updated-at-garbage", [{"id": "pre", "updated_at": "yesterday"}], [("pre", None, "updated_at")], BEFORE),
    ("tags-not-list", [{"id": "pre", "tags": "pets"}], [("pre", None, "tags")], BEFORE),
    ("tag-control", [{"id": "pre", "tags": ["ok", "b\u0007ad"]}], [("pre", None, "control characters")], BEFORE),
    ("name-object", [{"id": "pre", "name": {"en": "x"}}], [("pre", None, "audience name")], BEFORE),
    ("name-blank", [{"id": "pre", "name": "   "}], [("pre", None, "audience name")], BEFORE),
    ("user-id-null", [{"id": "pre", "add": [None, "5"]}], [("pre", "null", "string or an integer")],
     {"pre": {"1", "2", "5"}}),
    ("user-id-float", [{"id": "pre", "add": [1.5, "5"]}], [("pre", "1.5", "string or an integer")],
     {"pre": {"1", "2", "5"}}),
    ("user-id-bool", [{"id": "pre", "add": [False]}], [("pre", "false", "not bool")], BEFORE),
    ("user-id-nested-list", [{"id": "pre", "add": [["5"]]}], [("pre", '["5"]', "string or an integer")], BEFORE),
    ("user-id-object", [{"id": "pre", "remove": [{"id": "1"}]}], [("pre", '{"id": "1"}', "string or an integer")],
     BEFORE),
    ("user-id-empty", [{"id": "pre", "add": ["", "5"]}], [("pre", "", "must not be empty")], {"pre": {"1", "2", "5"}}),
    ("user-id-oversize", [{"id": "pre", "add": ["u" * 256, "5"]}], [("pre", "u" * 256, "at most 255")],
     {"pre": {"1", "2", "5"}}),
    ("user-id-newline", [{"id": "pre", "add": ["5\n6"]}], [("pre", "5\n6", "control characters")], BEFORE),
    ("user-id-nul", [{"id": "pre", "add": ["5\u0000"]}], [("pre", "5\u0000", "control characters")], BEFORE),
    ("user-id-rtl-override", [{"id": "pre", "add": ["\u202e5"]}], [("pre", "\u202e5", "control characters")], BEFORE),
    ("user-id-line-separator", [{"id": "pre", "add": ["5\u2028"]}], [("pre", "5\u2028", "control characters")],
     BEFORE),
    ("id-in-add-and-remove", [{"id": "pre", "add": ["1", "5"], "remove": ["5", "2"]}],
     [("pre", "5", "both add and remove")], {"pre": {"1"}}),
    ("members-with-bad-id", [{"id": "pre", "members": ["3", None]}], [("pre", "null", "string or an integer")],
     {"pre": {"3"}}),
]


@pytest.mark.parametrize(
    ("audiences", "rejections", "final"), [c[1:] for c in PARTLY_BAD], ids=[c[0] for c in PARTLY_BAD]
)
def test_bad_audience_or_user_id_is_rejected_on_its_own(seeded: Flask, audiences, rejections, final) -> None:
    response = post_webhook(seeded, {"audiences": audiences})
    assert response.status_code == 200
    answer = response.get_json()
    assert answer["status"] == "applied"
    got = [(r["audience"], r.get("user_id"), r["reason"]) for r in answer["rejected"]]
    assert len(got) == len(rejections), got
    for (audience, user_id, reason), (got_audience, got_user, got_reason) in zip(rejections, got):
        assert got_audience == audience
        assert got_user == user_id
        assert reason in got_reason
    assert memberships(seeded) == final
    assert answer["rejected_count"] == len(rejections)
    with seeded.app_context():
        recorded = seeded.extensions["cdp"].inbox.get(answer["delivery_id"])
    assert recorded.rejected.sample_dicts() == answer["rejected"]
    assert recorded.rejected_count == len(rejections)


def test_unicode_ids_are_kept_exactly(seeded: Flask) -> None:
    ids = ["zoë", "用户42", "😺", "x" * 255, "a b"]
    answer = post_webhook(seeded, {"audiences": [{"id": "ünï", "name": "Ünïcode ✓", "add": ids}]}).get_json()
    assert answer["rejected"] == []
    assert memberships(seeded) == {**BEFORE, "ünï": set(ids)}


def test_one_id_twice_in_a_list_counts_once(seeded: Flask) -> None:
    answer = post_webhook(seeded, {"audiences": [{"id": "pre", "add": ["5", "5", 5]}]}).get_json()
    assert answer["rejected"] == [] and answer["items"] == 3
    assert memberships(seeded) == {"pre": {"1", "2", "5"}}


def test_integer_ids_are_stored_as_decimal_strings(seeded: Flask) -> None:
    post_webhook(seeded, {"audiences": [{"id": 77, "members": [10, 200, "300"]}]})
    assert memberships(seeded)["77"] == {"10", "200", "300"}


def test_unknown_fields_are_ignored(seeded: Flask) -> None:
    body = {"audiences": [{"id": "pre", "add": ["5"], "colour": "blue"}], "vendor": {"x": 1}}
    answer = post_webhook(seeded, body).get_json()
    assert answer["rejected"] == []
    assert memberships(seeded) == {"pre": {"1", "2", "5"}}


def test_null_optional_fields_mean_absent(seeded: Flask) -> None:
    body = {"request_id": None, "segment_group_identifier": None,
            "audiences": [{"id": "pre", "name": None, "add": None, "members": None, "sequence": None}]}
    assert post_webhook(seeded, body).get_json()["rejected"] == []
    assert memberships(seeded) == BEFORE
