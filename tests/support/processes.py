"""Running real ``flask cdp`` processes against a test database."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import requests

REPO = Path(__file__).resolve().parent.parent.parent
BIN = Path(sys.executable).parent
FLASK = str(BIN / "flask")


def copy_of_a_clone(target: Path) -> None:
    """What a clone holds for a site: ``wsgi.py``, ``gunicorn.conf.py``, the demo, templates, static."""
    target.mkdir()
    for name in ("wsgi.py", "gunicorn.conf.py"):
        shutil.copy(REPO / name, target / name)
    for name in ("demo", "templates", "static"):
        shutil.copytree(REPO / name, target / name)


def unit_command(unit: str) -> list[str]:
    """The ``ExecStart`` of a unit in ``deploy/``, with ``/srv/shop/.venv/bin`` meaning this venv's."""
    line = next(line for line in (REPO / "deploy" / unit).read_text().splitlines() if line.startswith("ExecStart="))
    return [part.replace("/srv/shop/.venv/bin", str(BIN)) for part in shlex.split(line.removeprefix("ExecStart="))]


def write_app_module(directory: Path, database_url: str, name: str = "site_app", **config: Any) -> str:
    """A module defining ``app`` with cdp_bridge on ``database_url``; returns its name."""
    settings = {"SQLALCHEMY_DATABASE_URI": database_url, **config}
    (directory / f"{name}.py").write_text(
        "from flask import Flask\n"
        "from cdp_bridge import CDP\n"
        f"app = Flask({name!r})\n"
        f"app.config.update({settings!r})\n"
        "cdp = CDP(app)\n"
    )
    return name


@dataclass
class SiteCopy:
    """A copy of a clone in ``directory`` (see :func:`copy_of_a_clone`), the long-running
    processes started in it and their logs, as an operator runs them."""

    directory: Path
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    logs: list[IO[str]] = field(default_factory=list)

    def flask(self, *args: str) -> subprocess.CompletedProcess:
        """``.venv/bin/flask --app wsgi ARGS``, as the README writes it."""
        return subprocess.run([FLASK, "--app", "wsgi", *args], cwd=self.directory, capture_output=True, text=True,
                              timeout=120)

    def start(self, name: str, *command: str) -> subprocess.Popen:
        """A long-running process whose output goes to ``NAME.log`` in the site's directory."""
        log = open(self.directory / f"{name}.log", "w")  # noqa: SIM115 - closed by close()
        self.logs.append(log)
        process = subprocess.Popen(list(command), cwd=self.directory, stdout=log, stderr=subprocess.STDOUT, text=True)
        self.processes[name] = process
        return process

    def log(self, name: str) -> str:
        return (self.directory / f"{name}.log").read_text()

    def close(self) -> None:
        """Stop what still runs; every log is checked for secrets at the session's end."""
        from tests.support.logs import remember_output

        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
                process.wait(timeout=30)
        for log in self.logs:
            log.close()
        for log_file in self.directory.glob("*.log"):
            remember_output(log_file.read_text())


def process_env(directory: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": f"{directory}{os.pathsep}{REPO}", **extra}


def start_flask(directory: Path, module: str, *args: str, log_file: Path | None = None) -> subprocess.Popen:
    """Start ``flask --app module ARGS`` in the background.

    A long-running process should write to ``log_file``: a pipe nobody reads fills up
    and then blocks the process on its next log line.
    """
    output: Any = open(log_file, "a") if log_file is not None else subprocess.PIPE  # noqa: SIM115
    return subprocess.Popen(
        [FLASK, "--app", module, *args],
        cwd=directory,
        env=process_env(directory),
        stdout=output,
        stderr=subprocess.STDOUT if log_file is not None else subprocess.PIPE,
        text=True,
    )


def run_flask(directory: Path, module: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run ``flask --app module ARGS`` to completion."""
    return subprocess.run(
        [FLASK, "--app", module, *args],
        cwd=directory,
        env=process_env(directory),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def wait_until_serving(url: str, server: subprocess.Popen, seconds: float = 60) -> None:
    """Return once ``url`` answers at all; fail if the server exits or takes too long."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            requests.get(url, timeout=5)
            return
        except requests.RequestException:
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("server did not start (see its log in the test's folder)") from None
            time.sleep(0.1)
