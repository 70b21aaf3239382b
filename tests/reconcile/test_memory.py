"""A million-member audience is reconciled with flat memory: the answer is read as a
stream and goes to the store in chunks (SPEC section 15: without holding a second copy)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.fake_cdp_api import FakeCdpApi, settings
from tests.support.processes import process_env, run_flask, write_app_module
from tests.support.webhook import ACTIVATION

MEMBERS = 1_000_000


def profiles(count: int) -> Iterator[bytes]:
    yield b'{"profiles": ['
    for start in range(0, count, 10_000):
        yield b",".join(b'{"identifierValue": "user-%07d"}' % n for n in range(start, min(start + 10_000, count)))
        if start + 10_000 < count:
            yield b","
    yield b'], "sequenceNumber": 12}'


def peak_mb(folder: Path, module: str, *args: str) -> tuple[float, str]:
    """Run ``flask cdp ARGS`` in its own process; its peak resident memory in MB and output."""
    command = [str(Path(sys.executable).with_name("flask")), "--app", module, "cdp", *args]
    process = subprocess.Popen(command, cwd=folder, env=process_env(folder), stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT)
    _, status, usage = os.wait4(process.pid, 0)
    output = process.stdout.read().decode() if process.stdout else ""
    assert status == 0, output
    return usage.ru_maxrss / 1024, output


@pytest.mark.slow
def test_a_million_members_reconciled_within_150_mb_of_the_start(tmp_path: Path, database_url: str) -> None:
    fake = FakeCdpApi()
    try:
        fake.audiences = {"big": ("Big", ["seed"])}
        module = write_app_module(tmp_path, database_url, "reconcile_site", CDP_INLINE_WORKER=False,
                                  CDP_BULK_ASYNC_THRESHOLD=10, **ACTIVATION, **settings(fake))
        run_flask(tmp_path, module, "cdp", "init-db")
        run_flask(tmp_path, module, "cdp", "segment-group", "create", "shop")
        small, _ = peak_mb(tmp_path, module, "segments")  # the process's start: imports, the app, a query
        (tmp_path / "seed.json").write_text('{"audiences": [{"id": "big", "members": ["seed", "user-0000001"]}]}')
        _post_seed(tmp_path, module)
        fake.streamed = {"big": lambda: profiles(MEMBERS)}
        peak, output = peak_mb(tmp_path, module, "reconcile")
        assert f"big: added {MEMBERS - 1}, removed 1, unchanged 1, sequence 12" in output, output
        assert peak - small <= 150, f"peak {peak:.0f} MB, start {small:.0f} MB"
    finally:
        fake.close()


def _post_seed(folder: Path, module: str) -> Any:
    script = ("import json; from reconcile_site import app; from tests.support.webhook import post_webhook;"
              " answer = post_webhook(app, json.load(open('seed.json'))); assert answer.status_code == 200, answer.data")
    subprocess.run([sys.executable, "-c", script], cwd=folder, env=process_env(folder), check=True)
