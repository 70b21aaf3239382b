"""cdp_bridge's own engine keeps the connections a busy process opened (issue 41): with
SQLAlchemy's default pool (5 kept, 10 more closed as they came back) a worker of 12 threads
opened and closed a connection for most of its requests."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import event, text

from cdp_bridge import CDP
from cdp_bridge.constants import EXTENSION_KEY
from cdp_bridge.state import CDPState
from tests.support.postgres_server import PostgresServer

THREADS = 12
ROUNDS = 5


def connections_opened(app: Flask) -> int:
    """Rounds of THREADS threads that each hold a connection at the same moment, then give
    it back: how many connections the engine opened in all."""
    with app.app_context():
        engine = app.extensions[EXTENSION_KEY].engine
    opened: list[object] = []
    event.listen(engine, "connect", lambda connection, record: opened.append(connection))
    for _ in range(ROUNDS):
        together = threading.Barrier(THREADS, timeout=30)

        def request(together: threading.Barrier = together) -> None:
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
                together.wait()  # every thread holds one now

        threads = [threading.Thread(target=request) for _ in range(THREADS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert not any(thread.is_alive() for thread in threads)
    return len(opened)


def stop(app: Flask, state: CDPState) -> None:
    state.shutdown()
    with app.app_context():
        state.engine.dispose()


def site(url: str, tmp_path: Path, **config: object) -> Flask:
    app = Flask("pooled_site", instance_path=str(tmp_path / "instance"))
    app.config.update(SQLALCHEMY_DATABASE_URI=url, CDP_INLINE_WORKER=False, **config)
    CDP(app)
    return app


@pytest.mark.postgres
def test_a_busy_process_on_postgresql_opens_each_connection_once(postgres_server: PostgresServer, tmp_path: Path) -> None:
    url = postgres_server.create_database()
    app = site(url, tmp_path)
    state: CDPState = app.extensions[EXTENSION_KEY]
    try:
        assert connections_opened(app) == THREADS  # not THREADS + (THREADS - 5) per later round
        with app.app_context():
            assert state.engine.pool.size() == 32 and state.engine.pool._recycle == 300  # type: ignore[attr-defined]
    finally:
        stop(app, state)
        postgres_server.drop_database(url)


@pytest.mark.postgres
def test_the_host_s_engine_options_are_kept(postgres_server: PostgresServer, tmp_path: Path) -> None:
    url = postgres_server.create_database()
    app = site(url, tmp_path, SQLALCHEMY_ENGINE_OPTIONS={"pool_size": 3, "max_overflow": 1})
    state: CDPState = app.extensions[EXTENSION_KEY]
    try:
        with app.app_context():
            assert state.engine.pool.size() == 3  # type: ignore[attr-defined]
    finally:
        stop(app, state)
        postgres_server.drop_database(url)


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///{tmp}/site.sqlite3"])
def test_sqlite_keeps_flask_sqlalchemy_s_pool(url: str, tmp_path: Path) -> None:
    """An in-memory SQLite database takes no pool size (one shared connection): it still starts."""
    app = site(url.format(tmp=tmp_path), tmp_path)
    state: CDPState = app.extensions[EXTENSION_KEY]
    try:
        with app.app_context(), state.engine.connect() as conn:
            assert conn.execute(text("SELECT 1")).scalar() == 1
        assert app.config["SQLALCHEMY_ENGINE_OPTIONS"] == {"pool_recycle": 300}
    finally:
        state.shutdown()
