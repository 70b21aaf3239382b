"""Running real ``flask cdp`` processes against a test database."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import requests

REPO = Path(__file__).resolve().parent.parent.parent
FLASK = str(Path(sys.executable).with_name("flask"))


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
