"""Shared fixtures: a fresh app per test on real SQLite and on a real PostgreSQL server."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask

from cdp_bridge import CDP, SegmentStore
from cdp_bridge.settings import ALL_KEYS
from tests.support.browser import CHROMIUM_ARGS, chromium_path
from tests.support.fake_stream_api import FakeStreamAPI
from tests.support.logs import CAPTURED_LOG_LINES, find_leaks, missing_tool, secret_forms
from tests.support.postgres_server import PostgresServer, find_binary
from tests.support.redis_server import RedisServer
from tests.support.webhook import ACTIVATION


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Markers from what a test uses: ``postgres`` for the PostgreSQL server (directly, or
    as the ``postgresql`` side of ``database_url``), ``browser`` for Chromium."""
    for item in items:
        fixtures = getattr(item, "fixturenames", ())
        callspec = getattr(item, "callspec", None)
        on_postgres = callspec is not None and callspec.params.get("database_url") == "postgresql"
        if "postgres_server" in fixtures or on_postgres:
            item.add_marker(pytest.mark.postgres)
        if "browser" in fixtures:
            item.add_marker(pytest.mark.browser)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One PostgreSQL server for the session; skipped (never under CI) without binaries."""
    if find_binary("initdb") is None:
        missing_tool("PostgreSQL server binaries not found: apt-get install postgresql")
    server = PostgresServer.create()
    yield server
    server.destroy()


def _needs_redis() -> None:
    """Skip (never under CI, where .ci/run installs it) without Debian's redis-server."""
    if RedisServer.binary() is None:
        missing_tool("redis-server not found: apt-get install redis-server")


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One Redis server for the session."""
    _needs_redis()
    server = RedisServer()
    yield server
    server.stop()


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A Redis server of the test's own, which it may stop and start (an outage)."""
    _needs_redis()
    server = RedisServer()
    yield server
    server.stop()


class _Collector(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        CAPTURED_LOG_LINES.append(self.format(record))


@pytest.fixture(scope="session", autouse=True)
def no_secret_in_any_log_line() -> Iterator[None]:
    """Every logger at DEBUG into CAPTURED_LOG_LINES (SQLAlchemy's statement echo aside);
    at the end of the session, whatever ran, no configured secret may be in any of them
    (nor in the output of the servers and workers the tests started)."""
    handler = _Collector(level=logging.DEBUG)
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    previous = root.level
    quiet = logging.getLogger("sqlalchemy")
    quiet_previous = quiet.level
    quiet.setLevel(logging.WARNING)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield
    root.removeHandler(handler)
    root.setLevel(previous)
    quiet.setLevel(quiet_previous)
    leaks = find_leaks(CAPTURED_LOG_LINES, secret_forms())
    assert leaks == [], f"configured secrets in log lines: {leaks[:5]}"


@pytest.fixture(autouse=True)
def isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    """No CDP_* variable or .env file of the developer's leaks into a test."""
    for key in (*ALL_KEYS, "SQLALCHEMY_DATABASE_URI", "SECRET_KEY"):  # the demo reads these two as well
        monkeypatch.delenv(key, raising=False)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def api() -> Iterator[FakeStreamAPI]:
    """A local fake of Raptor's Streaming API (a real HTTP server on loopback)."""
    server = FakeStreamAPI()
    yield server
    server.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[str]:
    """An empty database of each kind: a new SQLite file; a PostgreSQL database that an
    earlier test gave back emptied, or a new one (see PostgresServer.lend_database)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/test.sqlite3"
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    url = server.lend_database()
    yield url
    server.give_back(url)


@pytest.fixture
def sqlite_url(tmp_path: Any) -> str:
    return f"sqlite:///{tmp_path}/test.sqlite3"


AppFactory = Callable[..., Flask]


@pytest.fixture
def make_app(tmp_path: Any, database_url: str) -> Iterator[AppFactory]:
    """Build a Flask app with cdp_bridge on ``database_url``, tables created."""
    apps: list[Flask] = []

    def factory(*, create_tables: bool = True, **config: Any) -> Flask:
        app = Flask("cdp_test_app", instance_path=str(tmp_path / f"instance{len(apps)}"))
        app.config.update(TESTING=True, SQLALCHEMY_DATABASE_URI=database_url, SECRET_KEY="test")
        app.config.update(config)
        cdp = CDP(app)
        if create_tables:
            with app.app_context():
                cdp.create_tables()
        apps.append(app)
        return app

    yield factory
    for app in apps:
        state = app.extensions["cdp"]
        if state.inline_worker is not None:
            state.inline_worker.stop()
        with app.app_context():
            state.db.engine.dispose()


@pytest.fixture
def app(make_app: AppFactory) -> Flask:
    """An app with one activation (client ``test-client``, protected group ``shop``)."""
    return make_app(**ACTIVATION)


@pytest.fixture
def store(app: Flask) -> Iterator[SegmentStore]:
    """The app's segment store, inside an app context."""
    with app.app_context():
        yield app.extensions["cdp"].store


@pytest.fixture
def webhook_app(make_app: AppFactory) -> Flask:
    """An app whose activation's group ``shop`` exists; no inline worker thread."""
    app = make_app(CDP_INLINE_WORKER=False, CDP_BULK_ASYNC_THRESHOLD=10, **ACTIVATION)
    with app.app_context():
        app.extensions["cdp"].store.create_group("shop", "Shop")
    return app


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """Debian's headless Chromium driven by Playwright (no browser download); skipped,
    saying why, without it (never under CI)."""
    path = chromium_path()
    if path is None:
        missing_tool("Chromium not found: apt-get install chromium")
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    with sync_api.sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        yield instance
        instance.close()
