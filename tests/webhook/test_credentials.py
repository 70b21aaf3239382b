"""Which activation a request's credentials name: HTTP Basic or X-Client-* headers."""

from __future__ import annotations

import base64

from cdp_bridge.model import ActivationCredentials
from cdp_bridge.secret import Secret
from cdp_bridge.webhook.credentials import authenticate, presented_credentials

ONE = ActivationCredentials("one", Secret("secret-one"), "group_one")
TWO = ActivationCredentials("two", Secret("secret-two"), "group_two")


def basic(text: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(text.encode()).decode()}


def test_basic_credentials_name_their_activation() -> None:
    assert authenticate(basic("two:secret-two"), [ONE, TWO]) is TWO


def test_header_credentials_name_their_activation() -> None:
    assert authenticate({"X-Client-Id": "one", "X-Client-Secret": "secret-one"}, [ONE, TWO]) is ONE


def test_a_secret_of_another_activation_does_not_authenticate() -> None:
    assert authenticate(basic("one:secret-two"), [ONE, TWO]) is None


def test_wrong_or_missing_credentials_do_not_authenticate() -> None:
    assert authenticate({}, [ONE]) is None
    assert authenticate(basic("one:wrong"), [ONE]) is None
    assert authenticate(basic("one"), [ONE]) is None
    assert authenticate({"Authorization": "Basic %%%"}, [ONE]) is None
    assert authenticate({"Authorization": "Bearer secret-one"}, [ONE]) is None
    assert authenticate({"X-Client-Id": "one"}, [ONE]) is None
    assert authenticate(basic("one:secret-one"), []) is None


def test_secret_may_contain_a_colon() -> None:
    colon = ActivationCredentials("c", Secret("a:b"), "g")
    assert presented_credentials(basic("c:a:b")) == ("c", "a:b")
    assert authenticate(basic("c:a:b"), [colon]) is colon


def test_non_utf8_basic_credentials_are_refused() -> None:
    token = base64.b64encode(b"\xff\xfe:\xff").decode()
    assert authenticate({"Authorization": f"Basic {token}"}, [ONE]) is None
