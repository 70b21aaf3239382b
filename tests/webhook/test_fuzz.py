"""Fuzzing the webhook: 10,000 generated bodies and header sets. Every answer is one of
SPEC section 3's statuses, never a 500, and the database stays consistent."""

from __future__ import annotations

import base64
import json

import pytest
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from cdp_bridge.identifiers import validate_user_id
from cdp_bridge.model import DeliveryStatus
from tests.support.webhook import ACTIVATION

#: 10,000 generated requests: most of a minute; ``pytest -m "not slow"`` leaves them out.
pytestmark = pytest.mark.slow

ALLOWED = {200, 202, 400, 401, 405, 413, 415, 422}
SECRET = ACTIVATION["CDP_ACTIVATION_CLIENT_SECRET"]
GOOD_AUTH = "Basic " + base64.b64encode(f"test-client:{SECRET}".encode()).decode()

#: Text with lone surrogates ("\ud800" is legal JSON but not Unicode text).
surrogate_texts = st.text(alphabet=st.characters(exclude_categories=()), max_size=12).map(lambda t: t + "\ud800")
texts = st.one_of(st.text(max_size=40), surrogate_texts)
scalars = st.one_of(st.none(), st.booleans(), st.integers(min_value=-2**70, max_value=2**70),
                    st.floats(allow_nan=False, allow_infinity=False), texts)
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
                           max_leaves=12)
user_ids = st.one_of(st.text(max_size=300), surrogate_texts, st.integers(min_value=-10, max_value=10**20), st.none(), st.booleans(), st.floats())
audiences = st.fixed_dictionaries(
    {},
    optional={
        "id": st.one_of(st.text(max_size=20), surrogate_texts, st.integers(), st.none(), json_values),
        "name": st.one_of(texts, json_values),
        "add": st.one_of(st.lists(user_ids, max_size=6), json_values),
        "remove": st.one_of(st.lists(user_ids, max_size=6), json_values),
        "members": st.one_of(st.lists(user_ids, max_size=6), json_values),
        "deleted": st.one_of(st.booleans(), json_values),
        "sequence": st.one_of(st.integers(min_value=-5, max_value=2**64), json_values),
        "tags": st.one_of(st.lists(texts, max_size=3), json_values),
        "profile_count": st.one_of(st.integers(), json_values),
        "updated_at": st.one_of(st.text(max_size=25), st.just("2026-11-28T10:00:00Z")),
        "description": st.one_of(texts, json_values),
    },
)
documents = st.one_of(
    st.fixed_dictionaries({"audiences": st.lists(st.one_of(audiences, json_values, st.none()), max_size=5)},
                          optional={"request_id": st.one_of(texts, json_values),
                                    "segment_group_identifier": st.one_of(st.just("shop"), st.text(max_size=10), json_values)}),
    json_values,
)
whole_bodies = documents.map(lambda d: json.dumps(d).encode())
truncated_bodies = whole_bodies.flatmap(lambda body: st.integers(0, len(body)).map(lambda cut: body[:cut]))
bodies = st.one_of(whole_bodies, truncated_bodies, st.binary(max_size=200))
#: Bytes a body is short of its Content-Length (0: whole), as when a client hangs up.
missing_bytes = st.one_of(st.just(0), st.just(0), st.integers(1, 100))
header_sets = st.fixed_dictionaries(
    {},
    optional={
        "Authorization": st.one_of(st.just(GOOD_AUTH), st.text(max_size=40).filter(lambda t: "\n" not in t and "\r" not in t)),
        "Content-Type": st.sampled_from(["application/json", "text/plain", "application/json; charset=utf-8", "", "multipart/form-data"]),
        "Idempotency-Key": st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=300),
        "X-Client-Id": st.sampled_from(["test-client", "other", ""]),
        "X-Client-Secret": st.sampled_from([SECRET, "wrong", ""]),
    },
)
methods = st.sampled_from(["POST"] * 8 + ["GET", "PUT"])


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_fuzzed_requests_get_only_spec_answers_and_leave_the_database_consistent(make_app) -> None:
    # Failed authentications unlimited: the fuzzer explores the 401 path, not the 429 that follows ten of them.
    app = make_app(CDP_INLINE_WORKER=False, CDP_BULK_ASYNC_THRESHOLD=8, CDP_WEBHOOK_MAX_BYTES=4096,
                   CDP_WEBHOOK_AUTH_FAILURES_PER_MINUTE=10**9, **ACTIVATION)
    with app.app_context():
        app.extensions["cdp"].store.create_group("shop")
    client = app.test_client()
    seen: dict[int, int] = {}

    @settings(max_examples=10_000, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(method=methods, body=bodies, headers=header_sets, missing=missing_bytes)
    def one_request(method: str, body: bytes, headers: dict[str, str], missing: int) -> None:
        headers = {"Authorization": GOOD_AUTH, "Content-Type": "application/json", **headers}
        announced = {"CONTENT_LENGTH": str(len(body) + missing)}
        response = client.open("/cdp/webhook", method=method, data=body, headers=headers, environ_overrides=announced)
        if missing and method == "POST" and response.status_code in (200, 202):
            raise AssertionError(f"a body {missing} bytes short was accepted: {body[:200]!r}")
        seen[response.status_code] = seen.get(response.status_code, 0) + 1
        assert response.status_code in ALLOWED, (response.status_code, body[:200], headers)
        assert response.is_json and ("error" in response.get_json() or "status" in response.get_json())

    one_request()
    assert sum(seen.values()) >= 10_000
    assert seen.get(200, 0) > 100 and seen.get(400, 0) > 100  # the fuzzer reached both sides
    assert_consistent(app)


def assert_consistent(app: Flask) -> None:
    """No orphan rows, valid statuses and user ids: what a half-written delivery would break."""
    state = app.extensions["cdp"]
    t = state.tables
    with app.app_context(), state.engine.connect() as conn:
        segment_ids = set(conn.scalars(select(t.segments.c.id)))
        group_ids = set(conn.scalars(select(t.segment_groups.c.id)))
        assert set(conn.scalars(select(t.segments.c.group_id))) <= group_ids
        for segment_id, user_id in conn.execute(select(t.memberships.c.segment_id, t.memberships.c.user_id)):
            assert segment_id in segment_ids
            assert validate_user_id(user_id) == user_id
        for name, description, tags in conn.execute(select(t.segments.c.name, t.segments.c.description,
                                                           t.segments.c.tags)):
            for text in [name, description or "", *(tags or [])]:
                text.encode("utf-8")  # no lone surrogate was stored
        for count, rejected in conn.execute(select(t.deliveries.c.rejected_count, t.deliveries.c.rejected)):
            sample = (json.loads(rejected) if isinstance(rejected, str) else rejected or {}).get("sample", [])
            assert len(sample) <= min(count, 100)
        statuses = set(conn.scalars(select(t.deliveries.c.status)))
        assert statuses <= set(DeliveryStatus)
        assert "processing" not in statuses
