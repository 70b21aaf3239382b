"""The dashboard's charts as plain numbers for an SVG template: where each bar or point
goes, and the text alternative that names every figure.

Drawn on the server, with no JavaScript, font or request to another origin: a chart is
a few dozen shapes, which a template writes out faster than a charting library loads,
and the back office's CSP stays as strict as it is. Each chart shows one series (small
multiples rather than colours), so it reads the same without colour.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from ...store.history import HOUR

#: A bar chart's drawing area (SVG user units); the template adds the labels around it.
BAR_WIDTH, BAR_HEIGHT = 300.0, 90.0
#: A sparkline's size.
LINE_WIDTH, LINE_HEIGHT = 240.0, 36.0


def bucket_label(period: str, bucket: datetime) -> str:
    """``14:00`` for an hour, ``2026-12-05`` for a day (UTC, as the figures are kept)."""
    return bucket.strftime("%H:00") if period == HOUR else bucket.strftime("%Y-%m-%d")


def bucket_iso(bucket: datetime) -> str:
    """The bucket's start as the CSV writes it."""
    return bucket.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Buckets:
    """A period's hours or days, labelled once for every chart of the page."""

    labels: list[str]
    isos: list[str]

    @classmethod
    def of(cls, period: str, starts: Sequence[datetime]) -> Buckets:
        return cls([bucket_label(period, start) for start in starts], [bucket_iso(start) for start in starts])


@dataclass(frozen=True)
class Bar:
    label: str
    bucket: str
    value: int
    x: float
    y: float
    width: float
    height: float


@dataclass(frozen=True)
class BarChart:
    """One counted series over a period: a bar per hour or day."""

    key: str
    title: str
    bars: list[Bar]
    top: int

    @property
    def total(self) -> int:
        return sum(bar.value for bar in self.bars)

    @property
    def text(self) -> str:
        """The text alternative: the total, then every figure by its hour or day."""
        figures = "; ".join(f"{bar.label}: {bar.value}" for bar in self.bars)
        return f"{self.title}: {self.total} in all. {figures}."


def bar_chart(key: str, title: str, buckets: Buckets, values: Sequence[int]) -> BarChart:
    top = max(max(values, default=0), 1)
    step = BAR_WIDTH / max(len(values), 1)
    bars = []
    for index, (label, iso, value) in enumerate(zip(buckets.labels, buckets.isos, values, strict=True)):
        height = BAR_HEIGHT * value / top
        bars.append(Bar(label, iso, value, round(index * step + step * 0.1, 2), round(BAR_HEIGHT - height, 2),
                        round(step * 0.8, 2), round(height, 2)))
    return BarChart(key, title, bars, top)


@dataclass(frozen=True)
class Sparkline:
    """A segment's member count over a period: one line through the hours or days that
    have a figure (none before its first)."""

    key: str
    title: str
    labels: list[str]
    buckets: list[str]
    values: list[int | None]
    lines: list[str]

    @property
    def change(self) -> int | None:
        known = [value for value in self.values if value is not None]
        return known[-1] - known[0] if known else None

    @property
    def figures(self) -> str:
        """``bucket=value`` pairs (empty before the first figure), for the page's readers and tests."""
        return " ".join(f"{bucket}={'' if value is None else value}" for bucket, value in zip(self.buckets, self.values,
                                                                                                strict=True))

    @property
    def text(self) -> str:
        """The text alternative: every figure by its hour or day, from the first one."""
        first = next((index for index, value in enumerate(self.values) if value is not None), None)
        if first is None:
            return f"{self.title}: no figure in this period."
        figures = "; ".join(f"{label}: {value}" for label, value in zip(self.labels[first:], self.values[first:],
                                                                         strict=True))
        before = f" (no figure before {self.labels[first]})" if first else ""
        return f"{self.title}{before}: {figures}."


def sparkline(key: str, title: str, buckets: Buckets, values: Sequence[int | None]) -> Sparkline:
    known = [value for value in values if value is not None]
    low, high = (min(known), max(known)) if known else (0, 0)
    span = high - low
    step = LINE_WIDTH / max(len(values) - 1, 1)
    lines: list[str] = []
    points: list[str] = []
    for index, value in enumerate(values):
        if value is None:
            if points:
                lines.append(" ".join(points))
            points = []
            continue
        y = LINE_HEIGHT / 2 if span == 0 else LINE_HEIGHT - 2 - (LINE_HEIGHT - 4) * (value - low) / span
        points.append(f"{round(index * step, 2)},{round(y, 2)}")
    if points:
        lines.append(" ".join(points))
    return Sparkline(key, title, buckets.labels, buckets.isos, list(values), lines)
