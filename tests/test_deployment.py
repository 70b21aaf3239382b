"""The README's deployment section, followed step by step with real processes.

A copy of what a clone holds (``wsgi.py``, ``gunicorn.conf.py``, templates, static files),
configured only by a ``.env`` file: PostgreSQL, ``flask --app wsgi cdp init-db``,
``segment-group create``, ``check``, then gunicorn and two queue workers started with the
``ExecStart`` commands of the systemd units in ``deploy/`` (so those are proven too). A small activation is applied in the request; a large
one is queued, the worker applying it is killed with SIGKILL mid-apply, and the other
worker takes it over once the (short, set by ``CDP_WORKER_LEASE_SECONDS``) lease ends and
applies it exactly once.
"""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from sqlalchemy import create_engine, text

from tests.support.logs import KNOWN_SECRETS
from tests.support.polling import wait_until
from tests.support.postgres_server import PostgresServer, free_port
from tests.support.processes import BIN, REPO, SiteCopy, copy_of_a_clone, unit_command, wait_until_serving
from tests.support.webhook import basic_auth

#: gunicorn and worker processes end to end: the full run, not the quick one.
pytestmark = pytest.mark.slow

CLIENT_ID = "shop-cdp"
CLIENT_SECRET = "deployment-client-secret-4f9a1c7e2b"
SECRET_KEY = "deployment-secret-key-0b8e5d3a91"
KNOWN_SECRETS.update({CLIENT_SECRET, SECRET_KEY})
GROUP = "shop_audiences"
LEASE_SECONDS = 3
LARGE = 400_000  # ids: applying them takes long enough to kill the worker mid-apply


@dataclass
class Deployment(SiteCopy):
    base_url: str = ""
    database_url: str = ""

    def delivery(self, delivery_id: int) -> dict:
        engine = create_engine(self.database_url)
        try:
            with engine.connect() as conn:
                row = conn.execute(text("SELECT status, attempts, claimed_by FROM cdp_deliveries WHERE id = :id"),
                                   {"id": delivery_id}).mappings().one()
                return dict(row)
        finally:
            engine.dispose()


@pytest.fixture
def deployment(postgres_server: PostgresServer, tmp_path: Path) -> Iterator[Deployment]:
    site = tmp_path / "shop"
    copy_of_a_clone(site)
    database_url = postgres_server.create_database()
    port = free_port()
    (site / ".env").write_text(
        f"SQLALCHEMY_DATABASE_URI={database_url}\n"
        f"SECRET_KEY={SECRET_KEY}\n"
        "CDP_ACCOUNT_NUMBER=123456\n"
        f"CDP_ACTIVATION_CLIENT_ID={CLIENT_ID}\n"
        f"CDP_ACTIVATION_CLIENT_SECRET={CLIENT_SECRET}\n"
        f"CDP_SEGMENT_GROUP_IDENTIFIER={GROUP}\n"
        f"CDP_WORKER_LEASE_SECONDS={LEASE_SECONDS}\n"
        f"GUNICORN_BIND=127.0.0.1:{port}\n"
    )
    deployed = Deployment(site, base_url=f"http://127.0.0.1:{port}", database_url=database_url)
    try:
        yield deployed
    finally:
        deployed.close()


def test_each_unit_runs_in_the_directory_that_holds_the_env_file() -> None:
    for unit in ("shop-web.service", "shop-worker@.service", "shop-export-users.service"):
        text_of_unit = (REPO / "deploy" / unit).read_text()
        assert "WorkingDirectory=/srv/shop\n" in text_of_unit, unit
        assert unit_command(unit)[0].startswith(str(BIN)), unit
    timer = (REPO / "deploy" / "shop-export-users.timer").read_text()
    assert "OnCalendar=*-*-* 03:00:00" in timer and "Persistent=true" in timer


def test_the_deployment_guide_lists_every_setting_gunicorn_conf_reads() -> None:
    """Each ``_setting("NAME", default)`` of gunicorn.conf.py has its row, with its default,
    in docs/deployment.md's table, and the workers' --log-level is named there."""
    read = re.findall(r'_setting\("([A-Z_]+)", "([^"]*)"\)', (REPO / "gunicorn.conf.py").read_text())
    guide = (REPO / "docs" / "deployment.md").read_text()
    assert len(read) == 9
    assert any(line.startswith("| `PROMETHEUS_MULTIPROC_DIR` |") for line in guide.splitlines())
    for name, default in read:
        row = next((line for line in guide.splitlines() if line.startswith(f"| `{name}` |")), None)
        assert row is not None, name
        assert not default or f"`{default}`" in row, (name, default, row)
    assert "flask cdp worker --log-level DEBUG|INFO|WARNING|ERROR" in guide


def claimed_by_pid(claimed_by: str) -> int:
    """A claim names host:pid:random (cdp_bridge.deliveries.inbox.worker_identity)."""
    return int(claimed_by.split(":")[1])


def test_the_readme_deployment_survives_a_worker_killed_mid_apply(deployment: Deployment) -> None:
    env_only = {key for key in os.environ if key.startswith(("CDP_", "GUNICORN_")) or key in ("SECRET_KEY", "SQLALCHEMY_DATABASE_URI")}
    assert not env_only, f"the test must be configured by .env alone, not {env_only}"

    for step in (["cdp", "init-db"], ["shop", "init-db"], ["cdp", "segment-group", "create", GROUP, "--name", "Shop audiences"]):
        done = deployment.flask(*step)
        assert done.returncode == 0, done.stdout + done.stderr
    check = deployment.flask("cdp", "check", "--site-url", "https://shop.example")
    assert check.returncode == 0, check.stdout + check.stderr
    assert "ok    account number 123456" in check.stdout
    assert "ok    database reachable (postgresql), cdp tables at schema revision" in check.stdout
    assert f"ok    segment group '{GROUP}' (activation '{CLIENT_ID}'): 0 segments" in check.stdout
    assert "Base URL for the CDP activation: https://shop.example/cdp/webhook" in check.stdout

    server = deployment.start("gunicorn", *unit_command("shop-web.service"))
    workers = {name: deployment.start(name, *unit_command("shop-worker@.service")) for name in ("worker1", "worker2")}
    wait_until_serving(deployment.base_url + "/", server)
    webhook = deployment.base_url + "/cdp/webhook"
    auth = basic_auth(CLIENT_ID, CLIENT_SECRET)

    small = requests.post(webhook, json={"audiences": [{"id": "cats", "name": "Cat owners", "add": ["1", "2", "3"]}]},
                          headers=auth, timeout=30)
    assert small.status_code == 200 and small.json()["status"] == "applied", small.text

    rng = random.Random(15)
    large_ids = [f"{rng.getrandbits(48):012x}" for _ in range(LARGE)]
    large = requests.post(webhook, json={"audiences": [{"id": "big", "name": "Big audience", "members": large_ids}]},
                          headers=auth, timeout=120)
    assert large.status_code == 202, large.text
    delivery_id = large.json()["delivery_id"]

    row = wait_until(lambda: (found := deployment.delivery(delivery_id))["status"] == "processing" and found,
                     "no worker claimed the delivery", seconds=60)
    victim = next((name for name, process in workers.items() if process.pid == claimed_by_pid(row["claimed_by"])), None)
    assert victim is not None, f"claimed by {row['claimed_by']}, not by a worker of this test"
    os.kill(workers[victim].pid, signal.SIGKILL)
    workers[victim].wait(timeout=10)
    assert deployment.delivery(delivery_id)["status"] == "processing", "killed too late: the apply had finished"

    row = wait_until(lambda: (found := deployment.delivery(delivery_id))["status"] == "applied" and found,
                     "the other worker did not take the delivery over", seconds=60, every=0.2)
    assert row["attempts"] == 2  # the killed try, then the other worker's
    survivor = next(name for name in workers if name != victim)
    worker_logs = deployment.log("worker1") + deployment.log("worker2")
    assert len(re.findall(rf"delivery {delivery_id} applied: ", worker_logs)) == 1  # applied once
    assert f"delivery {delivery_id}: taken over by " in deployment.log(survivor)
    assert f"lease {LEASE_SECONDS} s" in deployment.log(survivor)  # the worker logs its settings at start

    listing = deployment.flask("cdp", "segments", "--group", GROUP).stdout
    assert f"{GROUP}/big\tBig audience\t{len(set(large_ids))} members" in listing
    assert f"{GROUP}/cats\tCat owners\t3 members" in listing
    after = deployment.flask("cdp", "check")
    assert after.returncode == 0, after.stdout
    assert "note  queue: 0 queued, 0 being applied, 0 failed" in after.stdout
    assert "ok    a worker claimed a delivery" in after.stdout
    # The webhook's outcome lines reach gunicorn's error log (gunicorn.conf.py routes them).
    assert re.search(r"delivery \d+ applied: activation=shop-cdp group=shop_audiences items=3 applied=1", deployment.log("gunicorn"))
    assert re.search(r"delivery \d+ queued: ", deployment.log("gunicorn"))
    export = subprocess.run([*unit_command("shop-export-users.service"), "--dry-run"], cwd=deployment.directory,
                            capture_output=True, text=True, timeout=120)
    # The site has no users yet (no demo data on a site's database): the command runs, sends nothing.
    assert export.returncode == 0 and "records=0 batches=0" in export.stderr, export.stdout + export.stderr
    for name in ("gunicorn", "worker1", "worker2"):
        assert CLIENT_SECRET not in deployment.log(name) and SECRET_KEY not in deployment.log(name)
