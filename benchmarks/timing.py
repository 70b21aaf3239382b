"""Timing for the benchmarks: medians over alternating rounds.

This machine is shared and noisy. Each round runs every operation once, in turn, so a
slow spell hits one round of every operation instead of every run of one of them.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def no_reset() -> None:
    """For an operation that needs nothing done before it."""


def alternating_medians(
    operations: dict[str, tuple[Callable[[], object], Callable[[], None]]], rounds: int, calls: int = 1
) -> dict[str, float]:
    """Per operation ``(action, reset)``: the median over ``rounds`` of its seconds per call.

    In each round, every operation is reset, then its action is called ``calls`` times.
    """
    times: dict[str, list[float]] = {name: [] for name in operations}
    for _ in range(rounds):
        for name, (action, reset) in operations.items():
            reset()
            started = time.perf_counter()
            for _ in range(calls):
                action()
            times[name].append((time.perf_counter() - started) / calls)
    return {name: statistics.median(values) for name, values in times.items()}
