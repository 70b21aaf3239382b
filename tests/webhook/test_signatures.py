"""Standard Webhooks signatures: the published vector and every edge on its own."""

from __future__ import annotations

import pytest

from cdp_bridge.errors import SignatureError
from cdp_bridge.secret import Secret
from cdp_bridge.webhook.signatures import sign, verify

SECRET = Secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
MSG_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
TIMESTAMP = 1614265330
BODY = b'{"test": 2432232314}'
EXPECTED = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
OTHER = Secret("whsec_c2Vjb25kLXNlY3JldC1mb3Itcm90YXRpb24=")


def check(signature: str = EXPECTED, *, secrets=(SECRET,), msg_id=MSG_ID, timestamp=str(TIMESTAMP), body=BODY,
          now: float = TIMESTAMP) -> None:
    verify(list(secrets), msg_id, timestamp, signature, body, now=now)


def test_published_vector_signs_as_expected() -> None:
    assert sign(SECRET, MSG_ID, TIMESTAMP, BODY) == EXPECTED


def test_published_vector_verifies() -> None:
    check()


@pytest.mark.parametrize("header", [None, ""])
def test_missing_signature_is_refused(header) -> None:
    with pytest.raises(SignatureError, match="missing"):
        check(header)


def test_missing_id_is_refused() -> None:
    with pytest.raises(SignatureError, match="missing"):
        check(msg_id=None)


def test_missing_timestamp_is_refused() -> None:
    with pytest.raises(SignatureError, match="missing"):
        check(timestamp=None)


def test_non_numeric_timestamp_is_refused() -> None:
    with pytest.raises(SignatureError, match="whole number"):
        check(timestamp="yesterday")


@pytest.mark.parametrize("offset", [300, -300])
def test_timestamp_at_the_tolerance_is_accepted(offset: int) -> None:
    check(now=TIMESTAMP + offset)


@pytest.mark.parametrize("offset", [301, -301])
def test_timestamp_beyond_the_tolerance_either_way_is_refused(offset: int) -> None:
    with pytest.raises(SignatureError, match="tolerance"):
        check(now=TIMESTAMP + offset)


def test_changed_body_is_refused() -> None:
    with pytest.raises(SignatureError, match="no signature matches"):
        check(body=b'{"test": 2432232315}')


def test_changed_id_is_refused() -> None:
    with pytest.raises(SignatureError, match="no signature matches"):
        check(msg_id="msg_other")


def test_one_of_several_signatures_may_match() -> None:
    check(f"v1,bm90LXRoaXMtb25l {EXPECTED} v2,whatever")


def test_only_v1_signatures_count() -> None:
    with pytest.raises(SignatureError):
        check(EXPECTED.replace("v1,", "v2,"))


def test_any_configured_secret_may_match_for_rotation() -> None:
    check(secrets=(OTHER, SECRET))
    check(sign(OTHER, MSG_ID, TIMESTAMP, BODY), secrets=(SECRET, OTHER))


def test_wrong_secret_is_refused() -> None:
    with pytest.raises(SignatureError):
        check(secrets=(OTHER,))


@pytest.mark.parametrize("garbage", ["v1,", "v1,!!!not-base64!!!", "v1", "nonsense", "v1,g0hM9SsE"])
def test_malformed_signatures_are_refused(garbage: str) -> None:
    with pytest.raises(SignatureError):
        check(garbage)
