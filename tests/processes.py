"""Running real ``flask cdp`` processes against a test database."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
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


def start_flask(directory: Path, module: str, *args: str, **popen: Any) -> subprocess.Popen:
    """Start ``flask --app module ARGS`` in the background."""
    return subprocess.Popen(
        [FLASK, "--app", module, *args],
        cwd=directory,
        env=process_env(directory),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **popen,
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
