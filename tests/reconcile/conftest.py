from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from blinker import Signal
from flask import Flask

from tests.conftest import AppFactory
from tests.support.fake_cdp_api import FakeCdpApi, settings
from tests.support.webhook import ACTIVATION, post_webhook


@pytest.fixture
def cdp_api() -> Iterator[FakeCdpApi]:
    fake = FakeCdpApi()
    yield fake
    if fake.release is not None:
        fake.release.set()
    fake.close()


@pytest.fixture
def site(make_app: AppFactory, cdp_api: FakeCdpApi) -> Flask:
    """An app of activation ``shop`` that reconciles from the fake CDP API; the webhook
    made segments ``vip`` (u1 u2 u3 x1 x2) and ``cats`` (c1 c2)."""
    app = make_app(CDP_INLINE_WORKER=False, CDP_BULK_ASYNC_THRESHOLD=10, **ACTIVATION, **settings(cdp_api))
    with app.app_context():
        app.extensions["cdp"].store.create_group("shop", "Shop")
    answer = post_webhook(app, {"audiences": [{"id": "vip", "name": "VIP", "members": ["u1", "u2", "u3", "x1", "x2"]},
                                              {"id": "cats", "name": "Cats", "members": ["c1", "c2"]}]})
    assert answer.status_code == 200, answer.get_json()
    return app


Received = list[dict[str, Any]]


@pytest.fixture
def receive() -> Iterator[Callable[[Signal], Received]]:
    """``receive(signal)``: the arguments of each time it is sent, from now to the test's end."""
    connected: list[tuple[Signal, Callable[..., None]]] = []

    def start(signal: Signal) -> Received:
        received: Received = []

        def receiver(sender: Any, **arguments: Any) -> None:
            received.append({"sender": sender, **arguments})

        signal.connect(receiver, weak=False)
        connected.append((signal, receiver))
        return received

    yield start
    for signal, receiver in connected:
        signal.disconnect(receiver)
