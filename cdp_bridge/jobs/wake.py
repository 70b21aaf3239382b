"""Waking the queue workers at once on PostgreSQL: ``NOTIFY`` when work is queued,
``LISTEN`` in ``flask cdp worker``.

A delivery queued by a web process is committed with a ``NOTIFY cdp_bridge_queue`` in
the same transaction (PostgreSQL delivers it at the commit, and never for a rollback);
each ``flask cdp worker`` keeps one connection that ``LISTEN``s and wakes its worker, so
the apply starts within milliseconds instead of at the next poll. The poll stays as the
fallback (a notification sent while a worker was reconnecting is not replayed), and a
listener that loses its connection reconnects, waiting longer after each failure. On
SQLite there is no such channel: the inline worker is woken in process.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from sqlalchemy import Connection, Engine, text

from ..errors import first_line

log = logging.getLogger("cdp_bridge.worker")

CHANNEL = "cdp_bridge_queue"
#: Seconds between two checks whether the listener should stop, while no notification comes.
STOP_CHECK_SECONDS = 1.0
MAX_RECONNECT_SECONDS = 30.0


def notify_workers(conn: Connection) -> None:
    """Wake every listening worker when ``conn``'s transaction commits (PostgreSQL only)."""
    if conn.dialect.name == "postgresql":
        conn.execute(text(f"NOTIFY {CHANNEL}"))


class QueueListener:
    """A thread that ``LISTEN``s on the engine's database and calls ``wake`` for each
    notification, until stopped."""

    def __init__(self, engine: Engine, wake: Callable[[], None]) -> None:
        self.engine = engine
        self.wake = wake
        self.stop_event = threading.Event()
        #: Set once the first ``LISTEN`` is in place (the tests wait for it).
        self.listening = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cdp-queue-listener", daemon=True)

    def start(self) -> QueueListener:
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self.stop_event.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        wait = 1.0
        while not self.stop_event.is_set():
            try:
                self._listen()
                wait = 1.0
            except Exception as exc:  # noqa: BLE001 - any failure: the poll covers, the listener reconnects
                if self.stop_event.is_set():
                    return
                log.warning("queue worker: LISTEN %s lost (%s); the poll covers, reconnecting in %.0f s", CHANNEL,
                            first_line(exc), wait)
                self.stop_event.wait(wait)
                wait = min(wait * 2, MAX_RECONNECT_SECONDS)

    def _listen(self) -> None:
        """One connection of its own (autocommit: a notification arrives outside any
        transaction), listening until it fails or the listener stops."""
        with self.engine.connect() as conn:
            driver = conn.connection.driver_connection
            assert driver is not None
            driver.autocommit = True
            driver.execute(f"LISTEN {CHANNEL}")
            if not self.listening.is_set():
                log.info("queue worker: listening on %s: queued work starts at once", CHANNEL)
            self.listening.set()
            self.wake()  # anything queued while it was not listening
            while not self.stop_event.is_set():
                for _ in driver.notifies(timeout=STOP_CHECK_SECONDS):
                    self.wake()
            driver.execute(f"UNLISTEN {CHANNEL}")
            driver.autocommit = False
