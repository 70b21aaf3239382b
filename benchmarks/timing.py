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


def alternating_rounds(
    operations: dict[str, Callable[[], object]], rounds: int, calls: int = 1
) -> dict[str, list[float]]:
    """Per operation, its seconds per call in each round; every round runs each operation
    ``calls`` times, in turn, so the ratio of two operations can be taken round by round."""
    times: dict[str, list[float]] = {name: [] for name in operations}
    for _ in range(rounds):
        for name, action in operations.items():
            started = time.perf_counter()
            for _ in range(calls):
                action()
            times[name].append((time.perf_counter() - started) / calls)
    return times


def ratio_spread(product: list[float], baseline: list[float]) -> tuple[float, float, float]:
    """Min, median and max of the round-by-round ratios product / baseline."""
    ratios = [p / b for p, b in zip(product, baseline)]
    return min(ratios), statistics.median(ratios), max(ratios)


def verdict(spread: tuple[float, float, float], target: float, *, at_most: bool = True) -> str:
    """'meets' or 'misses' by the median; 'within noise' when the range straddles the target."""
    low, median, high = spread
    met = median <= target if at_most else median >= target
    noisy = low <= target <= high
    return ("meets" if met else "misses") + (", within noise" if noisy else "")


def spread_text(spread: tuple[float, float, float]) -> str:
    return f"{spread[0]:.2f}x / {spread[1]:.2f}x / {spread[2]:.2f}x (min / median / max)"
