"""Waiting for something another thread or process does: poll until it holds, or fail
naming it after ``seconds``. Tests wait on this, never on a fixed sleep."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(condition: Callable[[], T], what: str, seconds: float = 10, every: float = 0.02) -> T:
    """``condition()``'s first true value, polled every ``every`` seconds; an AssertionError
    saying ``what`` did not happen once ``seconds`` have passed."""
    deadline = time.monotonic() + seconds
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"{what} (waited {seconds:g} s)"
        time.sleep(every)
