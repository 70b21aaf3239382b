"""flask cdp stream-*-data against a local fake Streaming API (a real HTTP server)."""

from __future__ import annotations

import json
import logging
import socket
import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from types import SimpleNamespace

import pytest
from flask import Flask

from cdp_bridge import CDP
from cdp_bridge.export.streaming import SendFailed, StreamClient
from cdp_bridge.model import Clock
from cdp_bridge.secret import Secret
from tests.support.fake_stream_api import Answer, FakeStreamAPI
from tests.support.webhook import cdp_of

STREAM_ID = "stream-id-secret-1234"


@pytest.fixture
def sleeps() -> list[float]:
    return []


def users(count: int) -> list[dict]:
    return [{"id": i, "login": f"user{i}", "email": f"user{i}@example.com", "name": f"User {i}"} for i in range(1, count + 1)]


@pytest.fixture
def make_site(sqlite_url: str, api: FakeStreamAPI, sleeps: list[float]):
    def factory(records=None, **config) -> Flask:
        app = Flask("export_site")
        app.config.update(SQLALCHEMY_DATABASE_URI=sqlite_url, CDP_INLINE_WORKER=False, CDP_ACCOUNT_NUMBER="12345",
                          CDP_USER_STREAM_ID=STREAM_ID, CDP_STREAM_API_URL=api.url)
        app.config.update(config)
        cdp = CDP(app, clock=Clock(sleep=sleeps.append))
        if records is not None:
            cdp.user_source(lambda: iter(records))
        return app

    return factory


def run(app: Flask, *args: str):
    """Invoke a command; click's runner keeps stdout and stderr apart."""
    return app.test_cli_runner().invoke(args=["cdp", *args])


# -- the wire ---------------------------------------------------------------------------------


def test_draft_sends_a_sample_of_100_with_the_draft_header(make_site, api: FakeStreamAPI) -> None:
    result = run(make_site(users(250)), "stream-user-data")
    assert result.exit_code == 0, result.output
    (request,) = api.received
    assert request.path == "/stream/12345"
    assert request.headers["x-streamid"] == STREAM_ID
    assert request.headers["content-type"] == "application/json"
    assert request.headers["x-isdraft"] == "true"
    assert [item["id"] for item in request.items] == list(range(1, 101))
    assert request.body.startswith(b'[{"id":1,"login":"user1","email":"user1@example.com","name":"User 1"},')
    assert "records=100 batches=1" in result.output


def test_no_draft_sends_everything_without_the_header(make_site, api: FakeStreamAPI) -> None:
    result = run(make_site(users(1234)), "stream-user-data", "--no-draft")
    assert result.exit_code == 0, result.output
    assert all("x-isdraft" not in r.headers for r in api.received)
    sent = [item["id"] for r in api.received for item in r.items]
    assert sent == list(range(1, 1235))
    assert [len(r.items) for r in api.received] == [500, 500, 234]


def test_limit_applies_to_both_modes(make_site, api: FakeStreamAPI) -> None:
    site = make_site(users(300))
    assert run(site, "stream-user-data", "--limit", "7").exit_code == 0
    assert run(site, "stream-user-data", "--no-draft", "--limit", "150").exit_code == 0
    assert [len(r.items) for r in api.received] == [7, 150]


def test_dry_run_prints_the_json_and_touches_no_network(make_site, api: FakeStreamAPI) -> None:
    site = make_site(users(3), CDP_USER_STREAM_ID=None)
    result = run(site, "stream-user-data", "--dry-run", "--batch-size", "2")
    assert result.exit_code == 0
    batches = [json.loads(line) for line in result.stdout.splitlines()]
    assert [[item["id"] for item in batch] for batch in batches] == [[1, 2], [3]]
    assert api.received == []


def test_batches_are_bounded_by_count(make_site, api: FakeStreamAPI) -> None:
    run(make_site(users(100)), "stream-user-data", "--no-draft", "--batch-size", "40")
    assert [len(r.items) for r in api.received] == [40, 40, 20]


def test_batches_are_bounded_by_bytes(make_site, api: FakeStreamAPI) -> None:
    records = [{"id": i, "name": "x" * 300} for i in range(50)]
    result = run(make_site(records), "stream-user-data", "--no-draft", "--max-batch-bytes", "2048")
    assert result.exit_code == 0, result.output
    assert all(len(r.body) <= 2048 for r in api.received)
    assert len(api.received) > 1
    assert sum(len(r.items) for r in api.received) == 50


# -- retries ------------------------------------------------------------------------------


def test_503_and_429_are_retried_honouring_retry_after(make_site, api: FakeStreamAPI, sleeps: list[float]) -> None:
    api.script = [Answer(503, {"Retry-After": "7"}), Answer(429, {"Retry-After": "3"}), Answer(200)]
    result = run(make_site(users(5)), "stream-user-data")
    assert result.exit_code == 0, result.output
    assert sleeps == [7.0, 3.0]
    assert len(api.received) == 3
    assert api.received[0].body == api.received[2].body


def test_5xx_without_retry_after_backs_off_exponentially(make_site, api: FakeStreamAPI, sleeps: list[float]) -> None:
    api.script = [Answer(500), Answer(502), Answer(504), Answer(200)]
    assert run(make_site(users(2)), "stream-user-data").exit_code == 0
    assert len(sleeps) == 3
    assert 0.5 <= sleeps[0] <= 1.0 and 1.0 <= sleeps[1] <= 2.0 and 2.0 <= sleeps[2] <= 4.0


def test_400_is_not_retried_and_exits_1_with_a_summary(make_site, api: FakeStreamAPI, sleeps: list[float]) -> None:
    api.script = [Answer(200), Answer(400, body=b'{"error": "unknown column"}')]
    result = run(make_site(users(30)), "stream-user-data", "--batch-size", "10")
    assert result.exit_code == 1
    assert len(api.received) == 2 and sleeps == []
    assert "records=10 batches=1" in result.stdout
    assert 'NOT SENT: a batch of 10 records (HTTP 400: {"error": "unknown column"} (after 1 try))' in result.stdout
    assert "the export did not complete" in result.stderr


def test_retries_give_up_after_the_last_try(make_site, api: FakeStreamAPI, sleeps: list[float]) -> None:
    api.script = [Answer(503)] * 5
    result = run(make_site(users(2)), "stream-user-data")
    assert result.exit_code == 1
    assert len(api.received) == 5 and len(sleeps) == 4
    assert "HTTP 503 (after 5 tries)" in result.stdout


def test_connection_refused_is_retried_then_reported(make_site, sleeps: list[float]) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    site = make_site(users(2), CDP_STREAM_API_URL=f"http://127.0.0.1:{closed_port}/stream")
    result = run(site, "stream-user-data")
    assert result.exit_code == 1
    assert len(sleeps) == 4
    assert "connection failed (after 5 tries)" in result.stdout


def test_a_server_that_never_answers_times_out() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    accepted: list[socket.socket] = []
    thread = threading.Thread(target=lambda: accepted.append(listener.accept()[0]), daemon=True)
    thread.start()
    client = StreamClient(f"http://127.0.0.1:{listener.getsockname()[1]}", "1234", Secret("s"),
                          tries=1, timeout=0.2)
    with pytest.raises(SendFailed, match="timed out"):
        client.send(b"[]", draft=False)
    for connection in accepted:
        connection.close()
    listener.close()


@pytest.mark.parametrize(("retry_after", "wait"), [("Wed, 21 Oct 2015 07:28:30 GMT", 0.0), ("99999", 300.0)],
                         ids=["a date past", "beyond the cap"])
def test_retry_after_as_an_http_date_or_beyond_the_cap(make_site, api: FakeStreamAPI, sleeps: list[float],
                                                       retry_after: str, wait: float) -> None:
    api.script = [Answer(503, {"Retry-After": retry_after}), Answer(200)]
    assert run(make_site(users(1)), "stream-user-data").exit_code == 0
    assert sleeps == [wait]


def test_retry_after_as_an_http_date_ahead_is_waited_for(make_site, api: FakeStreamAPI, sleeps: list[float]) -> None:
    from email.utils import format_datetime

    ahead = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    api.script = [Answer(429, {"Retry-After": ahead}), Answer(200)]
    assert run(make_site(users(1)), "stream-user-data").exit_code == 0
    assert len(sleeps) == 1 and 27 <= sleeps[0] <= 30


# -- configuration --------------------------------------------------------------------------


def test_missing_stream_id_is_a_configuration_error(make_site, api: FakeStreamAPI) -> None:
    result = run(make_site(users(2), CDP_USER_STREAM_ID=None), "stream-user-data")
    assert result.exit_code == 2
    assert "CDP_USER_STREAM_ID is not set" in result.stderr
    assert api.received == []


def test_missing_account_number_is_a_configuration_error(make_site) -> None:
    result = run(make_site(users(2), CDP_ACCOUNT_NUMBER=None), "stream-user-data")
    assert result.exit_code == 2
    assert "CDP_ACCOUNT_NUMBER is not set" in result.stderr


def test_no_registered_source_is_a_configuration_error(make_site) -> None:
    result = run(make_site(None), "stream-user-data")
    assert result.exit_code == 2
    assert "@cdp.user_source" in result.stderr


@pytest.mark.parametrize("args", [["--batch-size", "0"], ["--limit", "-1"], ["--colour"]])
def test_bad_options_are_usage_errors(make_site, args) -> None:
    assert run(make_site(users(1)), "stream-user-data", *args).exit_code == 2


def test_stream_id_option_overrides_the_setting(make_site, api: FakeStreamAPI) -> None:
    assert run(make_site(users(1)), "stream-user-data", "--stream-id", "other-stream").exit_code == 0
    assert api.received[0].headers["x-streamid"] == "other-stream"


# -- items ---------------------------------------------------------------------------------------


def test_processors_run_in_priority_order(make_site, api: FakeStreamAPI) -> None:
    site = make_site(users(1))
    cdp = cdp_of(site)
    calls: list[str] = []

    @cdp.user_item_processor(priority=1)
    def low(item, record):
        calls.append("low")
        item["tier"] = item.get("tier", "") + "low"
        return item

    @cdp.user_item_processor(priority=10)
    def high(item, record):
        calls.append("high")
        item["tier"] = "high+"
        item["login_upper"] = record["login"].upper()
        return item

    assert run(site, "stream-user-data").exit_code == 0
    assert calls == ["high", "low"]
    assert api.received[0].items[0]["tier"] == "high+low"
    assert api.received[0].items[0]["login_upper"] == "USER1"


def test_an_item_holds_the_base_keys_its_record_has_the_same_on_every_run(make_site, api: FakeStreamAPI) -> None:
    """A key the record lacks is left out: Raptor reads null as "delete the stored value"."""
    records = [{"id": 1, "login": "a"}, SimpleNamespace(id=2, email="b@example.com", name=None),
               {"id": "3", "extra": "ignored"}]
    site = make_site(records)
    run(site, "stream-user-data")
    run(site, "stream-user-data")
    assert api.received[0].body == api.received[1].body
    assert api.received[0].body == (b'[{"id":1,"login":"a"},{"id":2,"email":"b@example.com","name":null},'
                                    b'{"id":"3"}]')


def test_records_that_cannot_be_sent_are_reported_and_skipped(make_site, api: FakeStreamAPI) -> None:
    records = [{"id": 1}, {"login": "no-id"}, {"id": 2, "name": float("nan")}, {"id": 3, "name": object()},
               {"id": True}, {"id": 4, "name": "ok"}]
    site = make_site(records)
    cdp = cdp_of(site)
    cdp.user_item_processor()(lambda item, record: {**item, "seen": datetime(2026, 11, 28, 10, 0), "score": Decimal("1.5")})
    result = run(site, "stream-user-data")
    assert result.exit_code == 1
    assert [item["id"] for item in api.received[0].items] == [1, 4]
    assert b'"seen":"2026-11-28T10:00:00","score":1.5}' in api.received[0].body
    for reason in ("(no id): record has no id", "id=2: name is nan", "id=3: name is a object", "id=True: record id must be"):
        assert reason in result.stderr
    assert "skipped=4" in result.stdout
    assert "4 records could not be sent" in result.stderr


def test_without_processors_a_bad_value_is_found_in_its_batch_and_only_its_record_skipped(
    make_site, api: FakeStreamAPI
) -> None:
    """The encoder checks values here: the batch it refuses is checked item by item."""
    records = [{"id": 1, "name": "a"}, {"id": 2, "name": float("inf")}, {"id": 3, "name": {1, 2}},
               {"id": 4, "name": Decimal("NaN")}, {"id": 5, "name": "lone \ud800 surrogate"},
               {"id": 6, "name": Decimal("7.50"), "login": datetime(2026, 11, 28, 9, 30)}, {"id": 7, "name": "ok"}]
    result = run(make_site(records), "stream-user-data", "--no-draft")
    assert result.exit_code == 1
    assert len(api.received) == 1  # the refused batch still goes out as one, without the bad items
    assert api.received[0].body == (b'[{"id":1,"name":"a"},{"id":6,"login":"2026-11-28T09:30:00","name":7.50},'
                                    b'{"id":7,"name":"ok"}]')
    for reason in ("id=2: name is inf, which JSON cannot hold", "id=3: name is a set, which JSON cannot hold",
                   "id=4: name is NaN, which JSON cannot hold", "id=5: name is not valid Unicode text"):
        assert reason in result.stderr
    assert "records=3 batches=1" in result.stdout and "skipped=4" in result.stdout


def test_values_that_refer_to_themselves_or_nest_too_deeply_are_skipped(make_site, api: FakeStreamAPI) -> None:
    circular: list = []
    circular.append(circular)
    deep: list = []
    for _ in range(5000):
        deep = [deep]
    records = [{"id": 1, "name": "ok"}, {"id": 2, "name": circular}, {"id": 3, "name": deep}, {"id": 4, "name": "ok"}]
    site = make_site(records)
    result = run(site, "stream-user-data")
    assert result.exit_code == 1
    assert [item["id"] for item in api.received[0].items] == [1, 4]
    assert "id=2: a value refers to itself or nests too deeply for JSON" in result.stderr
    assert "id=3: a value" in result.stderr and "nests too deeply for JSON" in result.stderr
    with_processor = make_site(records)
    cdp_of(with_processor).user_item_processor()(lambda item, record: item)
    assert run(with_processor, "stream-user-data").exit_code == 1
    assert [item["id"] for item in api.received[1].items] == [1, 4]


def test_processor_items_with_keys_json_cannot_name_are_skipped(make_site, api: FakeStreamAPI) -> None:
    site = make_site([{"id": 1}, {"id": 2}])
    cdp_of(site).user_item_processor()(
        lambda item, record: {**item, "scores": {7: "int keys become text"}} if record["id"] == 1
        else {**item, "scores": {(1, 2): "a tuple cannot be a key"}}
    )
    result = run(site, "stream-user-data")
    assert result.exit_code == 1
    assert [(i["id"], i["scores"]) for i in api.received[0].items] == [(1, {"7": "int keys become text"})]
    assert "id=2: key (1, 2) is a tuple; keys must be text or whole numbers" in result.stderr


ROWS_SQL = ("SELECT 1 AS id, 'a' AS login, 'a@example.com' AS email, 'A' AS name UNION ALL "
            "SELECT 2, 'b', NULL, 1e999 UNION ALL SELECT NULL, 'c', NULL, 'C' UNION ALL SELECT 4, 'd', NULL, 'D' UNION ALL "
            "SELECT 6.5, 'f', NULL, 'F'")


@pytest.mark.parametrize("shape", ["sqlite3.Row", "SQLAlchemy mappings", "SQLAlchemy rows"])
def test_sql_rows_are_read_by_column_name(make_site, api: FakeStreamAPI, tmp_path, shape: str) -> None:
    """Rows straight from a driver or from SQLAlchemy, some without a column or an id."""
    import sqlite3

    from sqlalchemy import create_engine, text

    def records():
        if shape == "sqlite3.Row":
            conn = sqlite3.connect(tmp_path / "rows.sqlite3")
            conn.row_factory = sqlite3.Row
            yield from conn.execute(ROWS_SQL)
            yield from conn.execute("SELECT 5 AS id, 'e' AS login")  # no email, no name column
            return
        with create_engine(f"sqlite:///{tmp_path / 'rows.sqlite3'}").connect() as conn:
            for sql in (ROWS_SQL, "SELECT 5 AS id, 'e' AS login"):
                result = conn.execute(text(sql))
                yield from (result.mappings() if shape == "SQLAlchemy mappings" else result)

    site = make_site(None)
    cdp_of(site).user_source(records)
    result = run(site, "stream-user-data", "--no-draft")
    assert result.exit_code == 1
    assert api.received[0].items == [
        {"id": 1, "login": "a", "email": "a@example.com", "name": "A"},
        {"id": 4, "login": "d", "email": None, "name": "D"},  # a NULL column is an explicit null
        {"id": 5, "login": "e"},  # no email or name column: left out
    ]
    assert "skipped user record id=2: name is inf, which JSON cannot hold" in result.stderr
    assert "skipped user record (no id): record has no id" in result.stderr
    assert "skipped user record id=6.5: record id must be a string or an integer, not float" in result.stderr


def test_sqlalchemy_rows_of_results_with_other_column_orders_share_a_batch(make_site, api: FakeStreamAPI,
                                                                          tmp_path) -> None:
    """Rows are read by position when one result's rows fill a batch: rows of results
    whose columns come in another order, or with other columns, keep their own values."""
    from sqlalchemy import create_engine, text

    queries = ["SELECT 1 AS id, 'a' AS login, 'a@example.com' AS email, 'A' AS name",
               "SELECT 'B' AS name, 'b@example.com' AS email, 'b' AS login, 2 AS id",
               "SELECT 'x' AS extra, 'c' AS login, 3 AS id",
               "SELECT 4 AS id, 'D' AS name",
               "SELECT 5 AS id"]

    def records():
        with create_engine(f"sqlite:///{tmp_path / 'rows.sqlite3'}").connect() as conn:
            for _ in range(2):  # within one batch, and each result filling a batch of its own
                for sql in queries:
                    yield from conn.execute(text(sql))

    expected = [{"id": 1, "login": "a", "email": "a@example.com", "name": "A"},
                {"id": 2, "login": "b", "email": "b@example.com", "name": "B"},
                {"id": 3, "login": "c"}, {"id": 4, "name": "D"}, {"id": 5}]
    for batch_size in ("500", "1"):
        api.received.clear()
        site = make_site(None)
        cdp_of(site).user_source(records)
        assert run(site, "stream-user-data", "--no-draft", "--batch-size", batch_size).exit_code == 0
        assert [item for call in api.received for item in call.items] == expected * 2


def test_product_and_content_sources_by_type(make_site, api: FakeStreamAPI) -> None:
    site = make_site(None, CDP_PRODUCT_STREAM_ID="products-stream", CDP_CONTENT_STREAM_ID="content-stream")
    cdp = cdp_of(site)
    cdp.product_source("food")(lambda: [{"id": "f1", "name": "Food", "price": Decimal("2.50")}])
    cdp.product_source("toys")(lambda: [{"id": "t1", "name": "Ball"}])
    cdp.content_source("article")(lambda: [{"id": 9, "name": "News", "published_at": datetime(2026, 1, 2)}])
    assert run(site, "stream-product-data", "--product-type", "toys").exit_code == 0
    assert run(site, "stream-product-data").exit_code == 0
    assert run(site, "stream-content-data", "--content-type", "article").exit_code == 0
    toys, everything, content = api.received
    assert toys.headers["x-streamid"] == "products-stream"
    assert [i["id"] for i in toys.items] == ["t1"]
    assert [(i["id"], i["type"]) for i in everything.items] == [("f1", "food"), ("t1", "toys")]
    assert b'"price":2.50' in everything.body
    assert content.headers["x-streamid"] == "content-stream"
    assert content.items == [{"id": 9, "type": "article", "name": "News", "published_at": "2026-01-02T00:00:00"}]
    unknown = run(site, "stream-product-data", "--product-type", "cars")
    assert unknown.exit_code == 2 and "no product source of type 'cars' (registered: food, toys)" in unknown.stderr


def test_requests_are_logged_at_debug_without_the_stream_id(make_site, api: FakeStreamAPI, caplog) -> None:
    api.script = [Answer(500, body=f"bad stream {STREAM_ID}".encode())]
    with caplog.at_level(logging.DEBUG, logger="cdp_bridge.export"):
        result = run(make_site(users(2)), "stream-user-data")
    assert "POST http://127.0.0.1" in caplog.text and "x-streamid=<redacted>" in caplog.text
    assert STREAM_ID not in caplog.text
    assert STREAM_ID not in result.stdout + result.stderr


# -- the schedule ---------------------------------------------------------------------------------


def test_export_schedule_prints_crontab_lines(make_site) -> None:
    site = make_site(None, CDP_EXPORT_SCHEDULE={"user": [{"interval": "0 3 * * *", "options": "--no-draft"}],
                                                "content": [{"interval": "*/15 * * * *", "options": "--content-type 'blog post'"}]})
    result = run(site, "export-schedule", "--directory", "/srv/my site", "--flask", "/srv/venv/bin/flask", "--app", "wsgi")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "0 3 * * * cd '/srv/my site' && /srv/venv/bin/flask --app wsgi cdp stream-user-data --no-draft",
        "*/15 * * * * cd '/srv/my site' && /srv/venv/bin/flask --app wsgi cdp stream-content-data --content-type 'blog post'",
    ]


@pytest.mark.parametrize(("options", "message"), [("--colour red", "No such option"),
                                                 ("--limit 'x", "No closing quotation")])
def test_export_schedule_refuses_bad_options(make_site, options: str, message: str) -> None:
    site = make_site(None, CDP_EXPORT_SCHEDULE={"user": [{"interval": "0 3 * * *", "options": options}]})
    result = run(site, "export-schedule")
    assert result.exit_code == 2
    assert message in result.stderr


def test_export_schedule_without_a_schedule(make_site) -> None:
    result = run(make_site(None), "export-schedule")
    assert result.exit_code == 2 and "CDP_EXPORT_SCHEDULE is not set" in result.stderr


def test_stream_client_sends_exactly_the_body(api: FakeStreamAPI) -> None:
    client = StreamClient(api.url, "9876", Secret("sid"))
    client.send(b'[{"id":"1"}]', draft=False)
    assert api.received[0].body == b'[{"id":"1"}]' and api.received[0].path == "/stream/9876"


def test_a_record_larger_than_a_batch_may_hold_is_skipped(make_site, api: FakeStreamAPI) -> None:
    records = [{"id": 1, "name": "small"}, {"id": 2, "name": "x" * 5000}, {"id": 3, "name": "small"}]
    result = run(make_site(records), "stream-user-data", "--max-batch-bytes", "2048")
    assert result.exit_code == 1
    assert sorted(item["id"] for r in api.received for item in r.items) == [1, 3]
    assert "skipped user record id=2: the item is" in result.stderr and "more than a whole batch may hold" in result.stderr


@pytest.mark.slow
def test_progress_shows_on_a_terminal_and_not_in_a_pipe(tmp_path, api: FakeStreamAPI) -> None:
    import os
    import pty
    import subprocess

    from tests.support.processes import FLASK, process_env

    (tmp_path / "export_app.py").write_text(
        "from flask import Flask\nfrom cdp_bridge import CDP\n"
        "app = Flask('export_app')\n"
        f"app.config.update(SQLALCHEMY_DATABASE_URI='sqlite:///{tmp_path}/x.sqlite3', CDP_ACCOUNT_NUMBER='12345',"
        f" CDP_USER_STREAM_ID='sid', CDP_STREAM_API_URL={api.url!r}, CDP_INLINE_WORKER=False)\n"
        "cdp = CDP(app)\n"
        "cdp.user_source(lambda: ({'id': i} for i in range(30)))\n"
    )
    command = [FLASK, "--app", "export_app", "cdp", "stream-user-data", "--batch-size", "10"]
    piped = subprocess.run(command, cwd=tmp_path, env=process_env(tmp_path), capture_output=True, text=True)
    assert piped.returncode == 0 and "\rsent" not in piped.stderr
    controller, terminal = pty.openpty()
    on_tty = subprocess.run(command, cwd=tmp_path, env=process_env(tmp_path), stdout=subprocess.PIPE, stderr=terminal, text=True)
    os.close(terminal)
    shown = b""
    while True:
        try:
            chunk = os.read(controller, 4096)
        except OSError:
            break
        if not chunk:
            break
        shown += chunk
    os.close(controller)
    assert on_tty.returncode == 0
    assert b"\rsent 10 records in 1 batches" in shown and b"\rsent 30 records in 3 batches" in shown
    assert "records=30 batches=3" in on_tty.stdout


def test_product_and_content_processors_and_the_user_type_selector(make_site, api: FakeStreamAPI) -> None:
    site = make_site(None, CDP_PRODUCT_STREAM_ID="products-stream", CDP_CONTENT_STREAM_ID="content-stream")
    cdp = cdp_of(site)
    cdp.user_source(lambda: [{"id": 1}])
    cdp.user_source("customer")(lambda: [{"id": 2}])
    cdp.product_source("toys")(lambda: [{"id": "t1", "stock": 4}])
    cdp.content_source("article")(lambda: [{"id": "a1", "words": 800}])
    cdp.product_item_processor(priority=5)(lambda item, record: {**item, "stock": record["stock"]})
    cdp.content_item_processor()(lambda item, record: {**item, "words": record["words"]})
    assert run(site, "stream-user-data", "--user-content-type", "customer").exit_code == 0
    assert run(site, "stream-product-data").exit_code == 0
    assert run(site, "stream-content-data").exit_code == 0
    users, products, content = api.received
    assert [item["id"] for item in users.items] == [2]
    assert products.items[0]["stock"] == 4 and "words" not in products.items[0]
    assert content.items[0]["words"] == 800 and "stock" not in content.items[0]


def test_a_redirect_is_not_followed_and_the_stream_id_goes_nowhere_else(api: FakeStreamAPI) -> None:
    from tests.support.loopback import Listener

    other_host = Listener("127.0.0.2")
    api.script = [Answer(307, {"Location": f"{other_host.url}/steal"})]
    client = StreamClient(api.url, "9876", Secret("stream-id-secret-1234"), tries=3, sleep=lambda s: None)
    try:
        with pytest.raises(SendFailed) as failed:
            client.send(b'[{"id":"1"}]', draft=False)
    finally:
        other_host.close()
    assert str(failed.value) == "answered 307 with a redirect to 127.0.0.2, which is not followed (after 1 try)"
    assert other_host.requests == [] and len(api.received) == 1  # a redirect is not retried either


def test_a_drip_fed_answer_is_cut_off_at_the_total_deadline() -> None:
    """One byte every 0.05 s keeps each read under any per-read timeout: the deadline holds."""
    import time

    listener = socket.create_server(("127.0.0.1", 0))

    def answer_slowly() -> None:
        connection, _ = listener.accept()
        connection.recv(65536)
        try:
            for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 40\r\n\r\n" + b"x" * 40:
                connection.sendall(bytes([byte]))
                time.sleep(0.05)
        except OSError:
            pass
        connection.close()

    threading.Thread(target=answer_slowly, daemon=True).start()
    client = StreamClient(f"http://127.0.0.1:{listener.getsockname()[1]}", "1234", Secret("s"), tries=1, timeout=0.5)
    started = time.monotonic()
    with pytest.raises(SendFailed, match="timed out"):
        client.send(b"[]", draft=False)
    assert time.monotonic() - started < 2
    listener.close()


def test_a_list_of_no_records_reads_as_no_items() -> None:
    """The registry's list reader takes an empty list (a source's last chunk may be one)."""
    from cdp_bridge.export.sources import ExportRegistry

    def never(record: object, type_name: str, problem: object) -> None:
        raise AssertionError("nothing to skip")

    assert ExportRegistry().items("user", "users", [], never) == []
    assert ExportRegistry().items("user", "users", [{"id": 7, "login": "x"}], never) == [{"id": 7, "login": "x"}]
