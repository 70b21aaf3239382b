"""On PostgreSQL a queued delivery wakes ``flask cdp worker`` at once (``NOTIFY`` in the
receiving transaction, ``LISTEN`` in the worker): with the poll set to 60 s, the delivery
is applied long before the worker would have looked."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest
from flask import Flask

from tests.support.processes import start_flask, write_app_module
from tests.support.webhook import ACTIVATION, delivery_rows, memberships, post_webhook

pytestmark = pytest.mark.slow
POLL_SECONDS = 60


def wait_for(condition, seconds: float, what: str) -> None:  # noqa: ANN001 - a callable
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)  # SQLite wakes its inline worker in process
def test_a_queued_delivery_wakes_a_listening_worker_long_before_its_poll(webhook_app: Flask, database_url: str,
                                                                         tmp_path: Path) -> None:
    module = write_app_module(tmp_path, database_url, SECRET_KEY="test", CDP_INLINE_WORKER=False, **ACTIVATION)
    log = tmp_path / "worker.log"
    worker = start_flask(tmp_path, module, "cdp", "worker", "--poll-seconds", str(POLL_SECONDS), log_file=log)
    try:
        wait_for(lambda: "listening on cdp_bridge_queue" in log.read_text(), 30, "the worker never listened")
        time.sleep(0.5)  # its first pass over the queue is over: from now on it waits 60 s, or a notification
        answer = post_webhook(webhook_app, {"audiences": [{"id": "cats", "add": [f"u{n}" for n in range(12)]}]})
        assert answer.status_code == 202
        wait_for(lambda: delivery_rows(webhook_app)[0].status == "applied", POLL_SECONDS / 3,
                 "not applied before a third of the poll interval: the worker was not woken")
        assert len(memberships(webhook_app)["cats"]) == 12
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(30)
    assert "queue worker stopped" in log.read_text()
