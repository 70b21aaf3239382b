"""gunicorn.conf.py as an operator meets it (issue 37): a mistyped ``.env`` at start is one
line and exit status 2; the same typo on a reload (HUP) keeps the site serving with one
ERROR line; gunicorn's own lines are in the one documented format; two gunicorns of one
user keep a control socket each. Real gunicorn processes serving the demo's clone."""

from __future__ import annotations

import ast
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.support.logs import remember_output
from tests.support.polling import wait_until
from tests.support.postgres_server import free_port
from tests.support.processes import copy_of_a_clone, process_env, wait_until_serving

pytestmark = pytest.mark.slow

#: The documented format: [time] [pid] [LEVEL] logger: message.
LINE = re.compile(r"\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d{4}\] \[\d+\] \[(DEBUG|INFO|WARNING|ERROR|CRITICAL)\] [\w.]+: ")


class Gunicorn:
    """``gunicorn -c gunicorn.conf.py`` in a copy of a clone, as the operator starts it."""

    def __init__(self, site: Path, home: Path) -> None:
        self.site = site
        self.port = free_port()
        self.log_path = site / "gunicorn.log"
        self.env = {**{key: value for key, value in process_env(site).items() if not key.startswith("GUNICORN_")},
                    "HOME": str(home)}
        self.process: subprocess.Popen[str] | None = None

    def write_env(self, **settings: str) -> None:
        lines = {"GUNICORN_BIND": f"127.0.0.1:{self.port}", "GUNICORN_WORKERS": "2", **settings}
        (self.site / ".env").write_text("".join(f"{key}={value}\n" for key, value in lines.items()))

    def start(self) -> subprocess.Popen[str]:
        with open(self.log_path, "a") as log:
            self.process = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py"], cwd=self.site,
                                            env=self.env, stdout=log, stderr=subprocess.STDOUT, text=True)
        return self.process

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(30)
        remember_output(self.log())


@pytest.fixture
def gunicorn(tmp_path: Path) -> Iterator[Gunicorn]:
    site = tmp_path / "clone"
    copy_of_a_clone(site)
    server = Gunicorn(site, tmp_path / "home")
    yield server
    server.stop()


def test_a_bad_env_at_start_is_one_line_and_status_2(gunicorn: Gunicorn) -> None:
    gunicorn.write_env(CDP_TRACKING_MODE="sever")
    process = gunicorn.start()
    assert process.wait(60) == 2
    output = gunicorn.log()
    assert output.strip().splitlines() == [
        f"Error: {gunicorn.site / '.env'}: invalid cdp_bridge setting: CDP_TRACKING_MODE: expected one of client,"
        " server, hybrid"]


def test_a_bad_gunicorn_number_at_start_is_one_line_and_status_2(gunicorn: Gunicorn) -> None:
    gunicorn.write_env(GUNICORN_WORKERS="two")
    assert gunicorn.start().wait(60) == 2
    assert gunicorn.log().strip().splitlines() == [
        f"Error: {gunicorn.site / '.env'}: GUNICORN_WORKERS: expected a whole number, not 'two'"]


def booted(gunicorn: Gunicorn) -> int:
    return gunicorn.log().count("Booting worker with pid")


def test_a_bad_env_on_reload_keeps_the_site_serving_with_one_line(gunicorn: Gunicorn) -> None:
    gunicorn.write_env(CDP_TRACKING_MODE="server")
    process = gunicorn.start()
    wait_until_serving(gunicorn.url + "/", process)
    assert requests.get(gunicorn.url + "/", timeout=10).status_code == 200
    wait_until(lambda: booted(gunicorn) == 2, "two workers booted", seconds=60)

    gunicorn.write_env(CDP_TRACKING_MODE="sever")  # the typo
    process.send_signal(signal.SIGHUP)
    wait_until(lambda: booted(gunicorn) == 4 or process.poll() is not None, "the reload's workers booted", seconds=60)
    wait_until(lambda: gunicorn.log().count("Worker exiting") >= 2, "the old workers gone", seconds=30)
    statuses = {requests.get(gunicorn.url + "/", timeout=10).status_code for _ in range(10)}
    assert process.poll() is None and statuses == {200}
    log = gunicorn.log()
    errors = [line for line in log.splitlines() if "[ERROR]" in line]
    assert errors == [line for line in log.splitlines() if "CDP_TRACKING_MODE" in line]
    assert len(errors) == 1 and "was not reloaded: invalid cdp_bridge setting: CDP_TRACKING_MODE: expected one of" in errors[0]
    assert "Traceback" not in log and "Worker failed to boot" not in log

    gunicorn.write_env(CDP_TRACKING_MODE="hybrid")  # fixed: the next reload takes it
    process.send_signal(signal.SIGHUP)
    wait_until(lambda: booted(gunicorn) == 6, "the second reload's workers booted", seconds=60)
    # hybrid mode serves POST /cdp/track (server mode answers it 404): the new setting is in force
    wait_until(lambda: requests.post(gunicorn.url + "/cdp/track", json={}, timeout=10).status_code != 404,
               "the fixed .env in force", seconds=30)
    assert len([line for line in gunicorn.log().splitlines() if "[ERROR]" in line]) == 1


def test_gunicorns_own_lines_are_in_the_documented_format(gunicorn: Gunicorn) -> None:
    gunicorn.write_env()
    process = gunicorn.start()
    wait_until_serving(gunicorn.url + "/", process)
    wait_until(lambda: booted(gunicorn) == 2, "two workers booted", seconds=60)
    lines = [line for line in gunicorn.log().splitlines() if '"GET /' not in line]  # the access log has its own
    assert "gunicorn.error: Starting gunicorn" in lines[0]
    assert all(LINE.match(line) for line in lines), [line for line in lines if not LINE.match(line)]


def test_two_gunicorns_of_one_user_keep_a_control_socket_each(gunicorn: Gunicorn, tmp_path: Path) -> None:
    second_site = tmp_path / "second"
    copy_of_a_clone(second_site)
    second = Gunicorn(second_site, tmp_path / "home")
    try:
        gunicorn.write_env()
        second.write_env()
        gunicorn.start()
        second.start()
        for server in (gunicorn, second):
            wait_until(lambda server=server: "Control socket listening at" in server.log(), "a control socket", seconds=60)
        sockets = [re.search(r"Control socket listening at (\S+)", server.log()).group(1) for server in (gunicorn, second)]
        assert sockets[0] != sockets[1]
        assert all(os.path.exists(path) for path in sockets)
        assert sockets[0].endswith(f"gunicorn-127.0.0.1_{gunicorn.port}.ctl")
    finally:
        second.stop()


def test_the_master_imports_no_cdp_bridge_and_writes_its_format() -> None:
    """What the master imports stays in memory across reloads: after an upgrade, a HUP's
    workers (forked from it) would run the old cdp_bridge, and the new gunicorn.conf.py
    could fail to import from the old one (it did: the master then exited)."""
    from cdp_bridge.log_text import LOG_DATE_FORMAT, LOG_FORMAT
    from cdp_bridge.settings import ENV_FILE_KEY
    from tests.support.processes import REPO

    source = (REPO / "gunicorn.conf.py").read_text()
    assert not re.search(r"^\s*(from|import) cdp_bridge", source, re.MULTILINE)
    constants = {node.targets[0].id: ast.literal_eval(node.value) for node in ast.parse(source).body
                 if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)
                 and node.targets[0].id in ("LOG_FORMAT", "LOG_DATE_FORMAT", "ENV_FILE_KEY")}
    assert constants == {"LOG_FORMAT": LOG_FORMAT, "LOG_DATE_FORMAT": LOG_DATE_FORMAT, "ENV_FILE_KEY": ENV_FILE_KEY}
