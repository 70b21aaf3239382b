"""CDP_TRACKING_BUY_OUTBOX (issue 28): a server-sent buy is written to the database before
its page is answered and sent by the queue workers, so a killed web process loses none.
Against a local fake tracking host, on SQLite and a real PostgreSQL server."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
from datetime import timedelta
from pathlib import Path
from urllib.parse import quote

import pytest
import requests
from flask import Flask, render_template_string
from sqlalchemy import select, update

from cdp_bridge.deliveries.inbox import MAX_ATTEMPTS
from cdp_bridge.jobs.worker import QueueWorker
from cdp_bridge.outbound import OutboundClient
from cdp_bridge.retries import retry_policy
from cdp_bridge.store.tables import utcnow
from cdp_bridge.tracking.outbox import BuyOutbox, OutboxCounts
from cdp_bridge.tracking.sender import SendOutcome, send_url
from tests.support.fake_tracking_host import FakeTrackingHost
from tests.support.logs import remember_output
from tests.support.postgres_server import free_port
from tests.support.processes import REPO, process_env, wait_until_serving
from tests.support.tracking_site import SESSION, VISITOR, consenting_client, post_event
from tests.support.webhook import cdp_of

BUY_PAGE = ("{{ cdp_track_visit('cat-tree') }}{{ cdp_track_buy([{'id': 'cat-tree', 'price': '89.9', 'quantity': 1},"
            " {'id': 'cat-food', 'price': 14.5, 'quantity': 2}], order_id='o-7', currency='EUR') }}")
#: Each line with its total (p5) and currency (p6), as the sender sends them.
BUY_QUERIES = sorted([f"p1=buy&p2=cat-tree&p5=89.90&p6=EUR&p12=89.90&p13=1&p21=o-7&coid={VISITOR}&sid={SESSION}"
                      "&url=http%3A%2F%2Flocalhost%2Fthanks",
                      f"p1=buy&p2=cat-food&p5=29.00&p6=EUR&p12=14.50&p13=2&p21=o-7&coid={VISITOR}&sid={SESSION}"
                      "&url=http%3A%2F%2Flocalhost%2Fthanks"])


def with_buy_page(app: Flask) -> Flask:
    @app.get("/thanks")
    def thanks() -> str:
        return render_template_string(BUY_PAGE)
    return app


def outbox_rows(app: Flask) -> list[tuple[str, int, str | None]]:
    """What the outbox holds: each row's path, tries and last error."""
    state = app.extensions["cdp"]
    table = state.tables.buy_outbox
    with app.app_context(), state.engine.connect() as conn:
        return [tuple(row) for row in conn.execute(select(table.c.path, table.c.attempts, table.c.last_error)
                                                   .order_by(table.c.id))]


#: The seconds the tests' outbox waits for the fake host's answer. The fake host shares the
#: test's interpreter: on a loaded machine it may answer after the 1 s a real send allows,
#: and the retry would send a buy twice (at least once, as documented), which would blur
#: the tests that count each buy once.
PATIENT = 10.0


def patient_outbox(app: Flask) -> BuyOutbox:
    outbox = app.extensions["cdp"].buy_outbox_or_none()
    assert outbox is not None
    outbox.timeout = PATIENT
    return outbox


def worker_of(app: Flask) -> QueueWorker:
    """A queue worker with the app's jobs, its outbox patient (see :data:`PATIENT`)."""
    state = app.extensions["cdp"]
    with app.app_context():
        return QueueWorker([state.inbox, patient_outbox(app)])


def send_buys(app: Flask) -> OutboxCounts:
    """What the outbox's job did in one pass of a queue worker."""
    with app.app_context():
        applied, buys = worker_of(app).run_once()
    assert applied.summary() == "Processed 0 deliveries."
    assert isinstance(buys, OutboxCounts)
    return buys


def send_due(outbox: BuyOutbox, worker: str) -> OutboxCounts:
    return outbox.run_due(lambda: worker, lambda: False)


def claim(outbox: BuyOutbox, worker: str) -> list[int]:
    return [int(row.id) for row in outbox.queue.claim(worker, outbox.claim_size)]


def queries(host: FakeTrackingHost, p1: str) -> list[str]:
    return sorted(hit.query for hit in host.hits if hit.params.get("p1") == p1)


def distinct_queries(host: FakeTrackingHost, p1: str) -> list[str]:
    """For events the sender sent from memory (1 s timeout: see :data:`PATIENT`)."""
    return sorted(set(queries(host, p1)))


def test_a_pages_buys_wait_in_the_outbox_until_a_worker_sends_them(make_site, host: FakeTrackingHost) -> None:
    app = with_buy_page(make_site("server", CDP_TRACKING_BUY_OUTBOX="true", CDP_TRACKING_CONCURRENCY=1))
    client = consenting_client(app, rsa=VISITOR, rsaSession=SESSION)
    assert client.get("/thanks").status_code == 200
    assert sorted(path for path, _, _ in outbox_rows(app)) == sorted(f"123456.rsa?{query}" for query in BUY_QUERIES)
    host.wait_for(lambda h: len(h.hits) >= 1)  # the visit, from memory as before
    app.extensions["cdp"].tracking.sender.stop(seconds=5)
    assert {hit.params["p1"] for hit in host.hits} == {"visit"}  # no buy went from memory
    assert send_buys(app) == OutboxCounts(sent=2)
    assert queries(host, "buy") == BUY_QUERIES  # the very requests the sender sends
    assert [hit.path for hit in host.hits if hit.params["p1"] == "buy"] == ["/123456.rsa"] * 2  # each once
    assert outbox_rows(app) == []
    assert send_buys(app) == OutboxCounts()  # nothing twice


def test_without_the_setting_buys_go_from_memory_and_the_outbox_stays_empty(make_site, host: FakeTrackingHost) -> None:
    app = with_buy_page(make_site("server", CDP_TRACKING_CONCURRENCY=1))
    assert consenting_client(app, rsa=VISITOR, rsaSession=SESSION).get("/thanks").status_code == 200
    host.wait_for(lambda h: len(distinct_queries(h, "buy")) == 2)
    assert distinct_queries(host, "buy") == BUY_QUERIES
    assert outbox_rows(app) == []
    assert app.extensions["cdp"].buy_outbox_or_none() is None


def test_an_offline_buy_goes_through_the_outbox_too(make_site, host: FakeTrackingHost) -> None:
    app = make_site("client", CDP_TRACKING_BUY_OUTBOX="on")
    with app.app_context():
        assert cdp_of(app).track_offline_buy("T-1", [{"id": "a", "price": 1, "quantity": 1}], "zoe@example.com") == 1
    assert [path.split("?")[0] for path, _, _ in outbox_rows(app)] == ["123456.stream"]
    assert send_buys(app) == OutboxCounts(sent=1)
    assert [hit.path for hit in host.hits] == ["/123456.stream"]
    assert host.hits[0].params["source"] == "webhook"


def test_a_hybrid_buy_posted_to_the_sites_endpoint_is_kept(make_site, host: FakeTrackingHost) -> None:
    app = make_site("hybrid", CDP_TRACKING_BUY_OUTBOX="true")
    client = consenting_client(app, rsa=VISITOR, rsaSession=SESSION)
    body = {"params": {"p1": "buy", "p2": "cat-tree", "p12": "89.90", "p13": "1"}, "url": "http://localhost/thanks"}
    assert post_event(client, body).status_code == 204
    assert len(outbox_rows(app)) == 1
    assert send_buys(app) == OutboxCounts(sent=1)
    assert queries(host, "buy")[0].startswith("p1=buy&p2=cat-tree&p12=89.90&p13=1&coid=")


def test_a_buy_raptor_does_not_accept_is_tried_again_later_then_dropped(make_site, host: FakeTrackingHost,
                                                                        caplog) -> None:
    app = make_site("client", CDP_TRACKING_BUY_OUTBOX="true")
    with app.app_context():
        cdp_of(app).track_offline_buy("T-2", [{"id": "a", "price": 1, "quantity": 1}], "zoe@example.com")
    host.statuses = [503]
    with caplog.at_level(logging.WARNING, logger="cdp_bridge.tracking"):
        assert send_buys(app) == OutboxCounts(retried=1)
    assert len(host.hits) == 1  # one request a try: the outbox's tries are the retries
    assert [(tries, error) for _, tries, error in outbox_rows(app)] == [(1, "Raptor answered 503")]
    assert "buy outbox: buy 1 not accepted (Raptor answered 503); tried again in 30 s" in caplog.messages
    assert send_buys(app) == OutboxCounts()  # not due yet
    state = app.extensions["cdp"]
    with app.app_context(), state.engine.begin() as conn:  # its time comes, on its last try
        conn.execute(update(state.tables.buy_outbox).values(available_at=utcnow() - timedelta(seconds=1), attempts=4))
    host.statuses = [502]
    with caplog.at_level(logging.ERROR, logger="cdp_bridge.tracking"):
        assert send_buys(app) == OutboxCounts(failed=1)
    assert outbox_rows(app) == [] and len(host.hits) == 2
    assert "buy outbox: buy 1 dropped after 5 tries (Raptor answered 502)" in caplog.messages
    assert not any("zoe" in message or "ruid" in message for message in caplog.messages)  # never the URL


def test_a_slow_raptor_receives_a_buy_at_most_once_per_outbox_try(make_site, host: FakeTrackingHost, caplog) -> None:
    """A host that answers after the timeout may have taken every request: each outbox try
    is one request, so a buy reaches it at most MAX_ATTEMPTS (5) times, not 5 x 4."""
    app = make_site("client", CDP_TRACKING_BUY_OUTBOX="true")
    with app.app_context():
        cdp_of(app).track_offline_buy("T-9", [{"id": "a", "price": 1, "quantity": 1}], "zoe@example.com")
        outbox = app.extensions["cdp"].buy_outbox_or_none()
    assert outbox is not None
    outbox.timeout = 1.0  # the real timeout; the held host answers later: each request times out
    state = app.extensions["cdp"]
    host.hold()
    try:
        outcomes = []
        for _ in range(MAX_ATTEMPTS):
            with app.app_context():
                outcomes.append(send_due(outbox, "worker-1"))
                with state.engine.begin() as conn:  # the next try is due now
                    conn.execute(update(state.tables.buy_outbox).values(available_at=utcnow() - timedelta(seconds=1)))
    finally:
        host.release()
        outbox.close()
    assert outcomes == [OutboxCounts(retried=1)] * (MAX_ATTEMPTS - 1) + [OutboxCounts(failed=1)]
    assert len(host.hits) == MAX_ATTEMPTS and outbox_rows(app) == []


def test_a_buy_raptor_refuses_is_dropped_at_once(make_site, host: FakeTrackingHost) -> None:
    app = make_site("client", CDP_TRACKING_BUY_OUTBOX="true")
    with app.app_context():
        cdp_of(app).track_offline_buy("T-3", [{"id": "a", "price": 1, "quantity": 1}], "zoe@example.com")
    host.statuses = [400]
    assert send_buys(app) == OutboxCounts(failed=1)
    assert len(host.hits) == 1 and outbox_rows(app) == []


def test_when_the_outbox_cannot_be_written_the_buy_goes_from_memory(make_site, host: FakeTrackingHost,
                                                                   caplog) -> None:
    """A database that fails (here: the table is missing) costs the page nothing and loses no buy."""
    app = with_buy_page(make_site("server", CDP_TRACKING_BUY_OUTBOX="true", CDP_TRACKING_CONCURRENCY=1))
    state = app.extensions["cdp"]
    with app.app_context():
        state.tables.buy_outbox.drop(state.engine)
    with caplog.at_level(logging.WARNING, logger="cdp_bridge.tracking"):
        assert consenting_client(app, rsa=VISITOR, rsaSession=SESSION).get("/thanks").status_code == 200
    host.wait_for(lambda h: len(distinct_queries(h, "buy")) == 2)
    assert distinct_queries(host, "buy") == BUY_QUERIES
    assert any(message.startswith("buy outbox: could not write 2 buys (") for message in caplog.messages)


def test_workers_share_the_outbox_each_buy_sent_once(make_app, host: FakeTrackingHost) -> None:
    """Two workers on one database (SQLite, and PostgreSQL with SKIP LOCKED) claim disjoint
    rows; a row whose worker died is taken over when its lease ends."""
    app = make_app(CDP_ACCOUNT_NUMBER="123456", CDP_SERVER_TRACKING_URL=host.url, CDP_TRACKING_BUY_OUTBOX="true",
                   CDP_INLINE_WORKER=False)
    state = app.extensions["cdp"]
    with app.app_context():
        for order in range(45):
            cdp_of(app).track_offline_buy(f"o-{order}", [{"id": "a", "price": 1, "quantity": 1}], "zoe@example.com")
        first, second = patient_outbox(app), patient_outbox(app)
        claimed_first, claimed_second = claim(first, "worker-1"), claim(second, "worker-2")
        assert len(claimed_first) == len(claimed_second) == 20
        assert not set(claimed_first) & set(claimed_second)
        # worker-1 dies holding its rows; worker-2 sends the rest, then the dead one's once its lease ends
        done = send_due(second, "worker-2")
        assert done == OutboxCounts(sent=5)
        with state.engine.begin() as conn:
            conn.execute(update(state.tables.buy_outbox).values(lease_expires_at=utcnow() - timedelta(seconds=1)))
        done = send_due(second, "worker-2")
    assert done == OutboxCounts(sent=40)
    orders = sorted(hit.params["p21"] for hit in host.hits)
    assert orders == sorted(f"o-{order}" for order in range(45))  # each once
    assert outbox_rows(app) == []


def test_flask_cdp_worker_once_sends_the_outbox_and_check_reports_it(make_site, host: FakeTrackingHost) -> None:
    app = make_site("client", CDP_TRACKING_BUY_OUTBOX="true")
    with app.app_context():
        cdp_of(app).track_offline_buy("T-4", [{"id": "a", "price": 1, "quantity": 1}], "zoe@example.com")
    runner = app.test_cli_runner()
    check = runner.invoke(args=["cdp", "check"])
    assert "ok    buy outbox: 1 waiting (oldest written " in check.output
    result = runner.invoke(args=["cdp", "worker", "--once"])
    assert result.exit_code == 0, result.output
    assert "Buy outbox: sent 1, to be tried again 0, dropped 0." in result.output
    assert {hit.params["p21"] for hit in host.hits} == {"T-4"}
    assert "ok    buy outbox: 0 waiting" in runner.invoke(args=["cdp", "check"]).output


def test_check_fails_when_buys_wait_longer_than_a_worker_would_leave_them(make_site, host: FakeTrackingHost) -> None:
    app = make_site("client", CDP_TRACKING_BUY_OUTBOX="true")
    state = app.extensions["cdp"]
    with app.app_context():
        cdp_of(app).track_offline_buy("T-5", [{"id": "a", "price": 1, "quantity": 1}], "zoe@example.com")
        with state.engine.begin() as conn:
            conn.execute(update(state.tables.buy_outbox).values(queued_at=utcnow() - timedelta(hours=1)))
    check = app.test_cli_runner().invoke(args=["cdp", "check"])
    assert check.exit_code == 1
    assert "FAIL  buy outbox: 1 waiting (oldest written 1 h ago): is flask cdp worker running" in check.output


def test_the_inline_worker_sends_kept_buys_at_once(make_site, host: FakeTrackingHost) -> None:
    app = with_buy_page(make_site("server", CDP_TRACKING_BUY_OUTBOX="true", CDP_INLINE_WORKER=True))
    try:
        assert consenting_client(app, rsa=VISITOR, rsaSession=SESSION).get("/thanks").status_code == 200
        host.wait_for(lambda h: len(distinct_queries(h, "buy")) == 2)
        assert distinct_queries(host, "buy") == BUY_QUERIES
    finally:
        app.extensions["cdp"].inline_worker.stop()
    assert outbox_rows(app) == []


SITE = textwrap.dedent("""
    import os, signal, sys
    from flask import Flask, render_template_string
    from cdp_bridge import CDP

    app = Flask("killed_site", instance_path=sys.argv[2])
    app.config.update(SECRET_KEY="x", SQLALCHEMY_DATABASE_URI=sys.argv[1], CDP_ACCOUNT_NUMBER="123456",
                      CDP_CONSENT_COOKIE="consent", CDP_TRACKING_MODE="server", CDP_INLINE_WORKER=False,
                      CDP_SERVER_TRACKING_URL=sys.argv[3], CDP_TRACKING_BUY_OUTBOX=sys.argv[4])
    CDP(app)

    @app.get("/thanks")
    def thanks():
        return render_template_string({page!r})

    client = app.test_client()
    client.set_cookie("consent", "1")
    client.set_cookie("rsa", {visitor!r})
    client.set_cookie("rsaSession", {session!r})
    assert client.get("/thanks").status_code == 200
    print("answered", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)  # before the sender could send: its host never answers
""").format(page=BUY_PAGE, visitor=VISITOR, session=SESSION)


@pytest.mark.parametrize("outbox", ["true", "false"])
def test_a_web_process_killed_after_the_page_loses_no_buy(make_app, database_url: str, host: FakeTrackingHost,
                                                          tmp_path: Path, outbox: str) -> None:
    """The page's process is SIGKILLed right after answering, its sender stuck on a host that
    does not answer; a worker then sends the buys from the database. Without the outbox
    (the control) they were only in the killed process's memory: lost."""
    app = make_app(CDP_ACCOUNT_NUMBER="123456", CDP_SERVER_TRACKING_URL=host.url, CDP_TRACKING_BUY_OUTBOX="true",
                   CDP_INLINE_WORKER=False)
    with socket_that_never_answers() as black_hole:
        child = subprocess.run([sys.executable, "-c", SITE, database_url, str(tmp_path / "killed"), black_hole, outbox],
                               capture_output=True, text=True, timeout=60, cwd=Path(__file__).resolve().parents[2],
                               env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])})
    assert child.returncode == -signal.SIGKILL, child.stderr
    assert child.stdout == "answered\n"
    with app.app_context():
        sent = send_buys(app)
    if outbox == "true":
        assert sent == OutboxCounts(sent=2)
        assert queries(host, "buy") == BUY_QUERIES
    else:
        assert sent == OutboxCounts() and host.hits == []


class socket_that_never_answers:  # noqa: N801 - used as a context manager, like a function
    """A loopback port that accepts connections and never answers: a tracking host that hangs."""

    def __enter__(self) -> str:
        import socket

        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(16)
        return f"http://127.0.0.1:{self.server.getsockname()[1]}"

    def __exit__(self, *exc: object) -> None:
        self.server.close()


def test_a_short_lease_claims_fewer_buys_at_a_time(make_site, host: FakeTrackingHost) -> None:
    """Sending one buy takes at most some 2 s (one request of at most 1 s): a 10 s lease
    claims 5, so no other worker takes over a buy still being sent."""
    app = make_site("client", CDP_TRACKING_BUY_OUTBOX="true", CDP_WORKER_LEASE_SECONDS=10)
    with app.app_context():
        for order in range(7):
            cdp_of(app).track_offline_buy(f"o-{order}", [{"id": "a", "price": 1, "quantity": 1}], "zoe@example.com")
        outbox = app.extensions["cdp"].buy_outbox_or_none()
        assert outbox is not None
        assert claim(outbox, "worker-1") == [1, 2, 3, 4, 5]


GUNICORN_SITE = textwrap.dedent("""
    import os
    from flask import Flask, render_template_string
    from cdp_bridge import CDP

    app = Flask("outbox_site")
    app.config.update(SECRET_KEY="x", SQLALCHEMY_DATABASE_URI={database_url!r}, CDP_ACCOUNT_NUMBER="123456",
                      CDP_CONSENT_COOKIE="consent", CDP_TRACKING_MODE="server", CDP_INLINE_WORKER=False,
                      CDP_TRACKING_BUY_OUTBOX="true", CDP_SERVER_TRACKING_URL=os.environ["TRACKING_HOST"])
    cdp = CDP(app)

    @app.get("/thanks")
    def thanks():
        return render_template_string({page!r}), 200, {{"X-Worker-Pid": str(os.getpid())}}
""")


@pytest.mark.slow
def test_a_gunicorn_worker_killed_after_the_page_loses_no_buy(database_url: str, host: FakeTrackingHost,
                                                              tmp_path: Path) -> None:
    """Real HTTP through gunicorn: the buy's page is answered, then its gunicorn worker is
    SIGKILLed (its sender stuck on a host that never answers), then gunicorn is stopped;
    ``flask cdp worker --once``, a process of its own, sends the buys from the database."""
    (tmp_path / "outbox_site.py").write_text(GUNICORN_SITE.format(database_url=database_url, page=BUY_PAGE))
    with socket_that_never_answers() as black_hole:
        made = subprocess.run([sys.executable, "-m", "flask", "--app", "outbox_site", "cdp", "init-db"], cwd=tmp_path,
                              env=process_env(tmp_path, TRACKING_HOST=black_hole), capture_output=True, text=True,
                              timeout=120)
        assert made.returncode == 0, made.stderr
        port = free_port()
        server = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", str(REPO / "gunicorn.conf.py")], cwd=tmp_path,
                                  env=process_env(tmp_path, TRACKING_HOST=black_hole, GUNICORN_APP="outbox_site:app",
                                                  GUNICORN_BIND=f"127.0.0.1:{port}", GUNICORN_WORKERS="1"),
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            wait_until_serving(f"http://127.0.0.1:{port}/thanks", server)
            answer = requests.get(f"http://127.0.0.1:{port}/thanks", timeout=10,
                                  headers={"Cookie": f"consent=1; rsa={VISITOR}; rsaSession={SESSION}"})
            assert answer.status_code == 200
            os.kill(int(answer.headers["X-Worker-Pid"]), signal.SIGKILL)
        finally:
            server.terminate()
            remember_output(server.communicate(timeout=30)[0])
    assert host.hits == []
    sent = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "outbox_site", "cdp", "worker", "--once"], cwd=tmp_path,
        env=process_env(tmp_path, TRACKING_HOST=host.url), capture_output=True, text=True, timeout=120)
    assert sent.returncode == 0, sent.stderr
    assert "Buy outbox: sent 2, to be tried again 0, dropped 0." in sent.stdout
    url = quote(f"http://127.0.0.1:{port}/thanks", safe="")
    assert queries(host, "buy") == sorted(query.replace("http%3A%2F%2Flocalhost%2Fthanks", url) for query in BUY_QUERIES)


@pytest.mark.parametrize(("status", "problem", "refused"), [
    (204, None, False), (404, "Raptor answered 404", True), (429, "Raptor answered 429", False),
    (503, "Raptor answered 503", False)])
def test_what_an_answer_means_for_a_buy(host: FakeTrackingHost, status: int, problem: str | None, refused: bool) -> None:
    """The sender's and the outbox's one reading of an answer: a 4xx other than 429 is a
    refusal (dropped at once), a 429 or a 5xx may pass later (tried again)."""
    host.statuses = [status]
    client = OutboundClient(timeout=PATIENT, max_answer_bytes=1024, pool_size=1)
    try:
        assert send_url(client, retry_policy(1, 0), f"{host.url}/123456.rsa?p1=buy") == SendOutcome(problem, refused)
    finally:
        client.close()
    assert len(host.hits) == 1
