"""The operator's path with real processes: a gunicorn reload that takes a changed
``.env``, and a PostgreSQL outage (a server of the test's own, stopped and started
again) that ``check``, the workers and the back office report without a traceback."""

from __future__ import annotations

import re
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from tests.support.logs import KNOWN_SECRETS, missing_tool
from tests.support.polling import wait_until
from tests.support.postgres_server import PostgresServer, find_binary, free_port
from tests.support.processes import BIN, REPO, SiteCopy, copy_of_a_clone, unit_command, wait_until_serving

pytestmark = pytest.mark.slow

CLIENT_ID = "shop-cdp"
OLD_SECRET, NEW_SECRET = "old-client-secret-7c41a9e2d0", "new-client-secret-3b8f6e1a95"
SECRET_KEY = "operator-secret-key-5e2c9a7b41d08f36"
ADMIN_PASSWORD = "operator-admin-password-81"
KNOWN_SECRETS.update({OLD_SECRET, NEW_SECRET, SECRET_KEY, ADMIN_PASSWORD})
GROUP = "shop_audiences"
#: A delivery's outcome line as every process writes it: [time] [pid] [LEVEL] logger: message.
DELIVERY_LINE = r"^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d{4}\] \[\d+\] \[INFO\] cdp_bridge\.webhook: delivery \d+ applied: "


@dataclass
class Site(SiteCopy):
    database_url: str = ""
    port: int = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def write_env(self, client_secret: str) -> None:
        (self.directory / ".env").write_text(
            f"SQLALCHEMY_DATABASE_URI={self.database_url}\nSECRET_KEY={SECRET_KEY}\n"
            f"SHOP_ADMIN_PASSWORD={ADMIN_PASSWORD}\nCDP_ACCOUNT_NUMBER=123456\n"
            f"CDP_ACTIVATION_CLIENT_ID={CLIENT_ID}\nCDP_ACTIVATION_CLIENT_SECRET={client_secret}\n"
            f"CDP_SEGMENT_GROUP_IDENTIFIER={GROUP}\nCDP_BULK_ASYNC_THRESHOLD=5\n"
            f"GUNICORN_BIND=127.0.0.1:{self.port}\nGUNICORN_WORKERS=1\n")


@pytest.fixture
def own_postgres() -> Iterator[PostgresServer]:
    """A server this test may stop: the session's is shared."""
    if find_binary("initdb") is None:
        missing_tool("PostgreSQL server binaries not found: apt-get install postgresql")
    server = PostgresServer.create()
    yield server
    server.destroy()


@pytest.fixture
def site(own_postgres: PostgresServer, tmp_path: Path) -> Iterator[Site]:
    directory = tmp_path / "shop"
    copy_of_a_clone(directory)
    built = Site(directory, database_url=own_postgres.create_database(), port=free_port())
    built.write_env(OLD_SECRET)
    for step in (["cdp", "init-db"], ["shop", "init-db"], ["cdp", "segment-group", "create", GROUP]):
        done = built.flask(*step)
        assert done.returncode == 0, done.stdout + done.stderr
    try:
        yield built
    finally:
        built.close()


def post_activation(site: Site, secret: str, user: str = "1", ids: int = 1) -> requests.Response:
    body = {"audiences": [{"id": "cats", "add": [f"{user}-{n}" for n in range(ids)]}]}
    return requests.post(f"{site.base_url}/cdp/webhook", json=body, auth=(CLIENT_ID, secret), timeout=30)


def test_a_reload_takes_the_changed_env_file_secrets_included(site: Site) -> None:
    """``systemctl reload`` (the unit's ExecReload: HUP): gunicorn's new workers build the
    app from the .env as it is now, so the new client secret is taken and the old refused."""
    server = site.start("gunicorn", *unit_command("shop-web.service"))
    wait_until_serving(site.base_url + "/", server)
    assert "ExecReload=/bin/kill -HUP $MAINPID" in (REPO / "deploy" / "shop-web.service").read_text()
    assert post_activation(site, OLD_SECRET).status_code == 200
    site.write_env(NEW_SECRET)
    booted = site.log("gunicorn").count("Booting worker")
    server.send_signal(signal.SIGHUP)
    wait_until(lambda: site.log("gunicorn").count("Booting worker") > booted, "gunicorn booted a new worker", seconds=30)
    wait_until(lambda: site.log("gunicorn").count("Worker exiting") >= 1, "the old worker left", seconds=30)
    assert post_activation(site, NEW_SECRET, user="2").status_code == 200
    assert post_activation(site, OLD_SECRET, user="3").status_code == 401
    assert server.poll() is None  # the same master: a reload, not a restart
    assert re.search(DELIVERY_LINE, site.log("gunicorn"), re.M), site.log("gunicorn")  # one format, also after HUP


def test_a_database_outage_is_reported_without_a_traceback(site: Site, own_postgres: PostgresServer) -> None:
    server = site.start("gunicorn", *unit_command("shop-web.service"))
    wait_until_serving(site.base_url + "/", server)
    own_postgres.stop()
    try:
        check = site.flask("cdp", "check")
        output = check.stdout + check.stderr
        assert check.returncode == 1, output
        assert re.search(r"^FAIL  database unreachable: ", check.stdout, re.M), output
        once = site.flask("cdp", "worker", "--once")
        assert once.returncode == 1 and "database" in once.stderr, once.stdout + once.stderr
        for result in (check, once):
            assert "Traceback" not in result.stdout + result.stderr
        office = requests.get(f"{site.base_url}/cdp/admin/groups", auth=("admin", ADMIN_PASSWORD), timeout=30)
        assert office.status_code == 503 and office.headers["Retry-After"] == "30"
        assert "The database does not answer" in office.text
        assert post_activation(site, OLD_SECRET).status_code == 503  # the CDP retries it
        worker = site.start("worker", str(BIN / "flask"), "--app", "wsgi", "cdp", "worker", "--poll-seconds", "0.5")
        wait_until(lambda: "database unreachable" in site.log("worker"), "the worker saw the outage", seconds=30)
        time.sleep(3)  # a few tries, further apart each time
    finally:
        own_postgres.start()
    queued = post_activation(site, OLD_SECRET, user="late", ids=20)  # 20 ids >= 5: queued for the worker
    assert queued.status_code == 202, queued.text
    delivery = queued.json()["delivery_id"]
    wait_until(lambda: f"delivery {delivery} applied" in site.log("worker"), "the worker applied it", seconds=60)
    # The recovery line follows the pass that succeeded, so it can land just after the delivery's line.
    wait_until(lambda: "the database answers again" in site.log("worker"), "the worker logged the recovery", seconds=30)
    worker_log = site.log("worker")
    assert re.search(DELIVERY_LINE, worker_log, re.M), worker_log  # the same format and logger as gunicorn's
    assert worker_log.count("database unreachable") == 1, worker_log  # one line for the outage, not one per try
    assert "Traceback" not in worker_log
    assert worker.poll() is None
    assert "Traceback" not in site.log("gunicorn")
