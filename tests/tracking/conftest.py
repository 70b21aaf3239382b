"""The tracking tests' fixtures: a fake tracking host and sites that send to it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.fake_tracking_host import FakeTrackingHost
from tests.support.tracking_site import tracking_sites


@pytest.fixture
def host() -> Iterator[FakeTrackingHost]:
    fake = FakeTrackingHost()
    yield fake
    fake.close()


@pytest.fixture
def make_site(tmp_path: Path, host: FakeTrackingHost):
    yield from tracking_sites(tmp_path, host)
