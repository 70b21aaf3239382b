"""``driver_row``: a small delivery's statements on psycopg's own cursor (issue 41) fail
as SQLAlchemy's statements do, so the webhook's answers to a database error stay the same."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, exc, text

from cdp_bridge.store.bulk import driver_row
from tests.support.postgres_server import PostgresServer


@pytest.fixture
def engine(postgres_server: PostgresServer):  # noqa: ANN201
    url = postgres_server.create_database()
    engine = create_engine(url)
    yield engine
    engine.dispose()
    postgres_server.drop_database(url)


@pytest.mark.postgres
def test_a_row_and_its_named_parameters(engine) -> None:  # noqa: ANN001
    with engine.begin() as conn:
        assert tuple(driver_row(conn, "SELECT %(a)s::int + 1, %(b)s", {"a": 1, "b": "x"})) == (2, "x")
        assert driver_row(conn, "SELECT 1 WHERE false", ()) is None


@pytest.mark.postgres
def test_a_driver_error_is_sqlalchemy_s_and_the_transaction_rolls_back(engine) -> None:  # noqa: ANN001
    with engine.connect() as conn:
        conn.execute(text("CREATE TABLE t (id int PRIMARY KEY)"))
        conn.commit()
        with pytest.raises(exc.IntegrityError, match="duplicate key"), conn.begin():
            driver_row(conn, "INSERT INTO t VALUES (1) RETURNING id", ())
            driver_row(conn, "INSERT INTO t VALUES (1) RETURNING id", ())
        assert conn.scalar(text("SELECT count(*) FROM t")) == 0  # the connection works on, nothing kept


@pytest.mark.postgres
def test_a_lost_connection_is_an_operational_error_and_is_invalidated(engine) -> None:  # noqa: ANN001
    """What the webhook answers 503 for; the pool then opens a new connection."""
    with engine.connect() as conn:
        first = conn.scalar(text("SELECT pg_backend_pid()"))
        with engine.connect() as other:
            other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": first})
        with pytest.raises(exc.OperationalError):
            driver_row(conn, "SELECT 1", ())
        assert conn.invalidated
    with engine.connect() as conn:
        assert conn.scalar(text("SELECT pg_backend_pid()")) != first
