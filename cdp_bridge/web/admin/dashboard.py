"""The back office's landing page: member counts, deliveries, tracking, erasures and
reconciles over the last 24 hours, 7 days or 30 days, as SVG charts and as CSV.

Every figure comes from ``cdp_history`` (:mod:`...store.history`), which the writers keep
with each change: a page is four statements (a page of segments, their figures in the
period, each one's last figure before it, the counted series), whatever the store holds.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from flask import Response, abort, request, url_for

from ...state import current_state as _state
from ...store import history
from ...store.tables import utcnow
from .charts import BarChart, Buckets, Sparkline, bar_chart, sparkline
from .pages import Pager, page_number, show

#: Segments a dashboard page charts.
SEGMENTS_PER_PAGE = 100
DEFAULT_PERIOD = "7d"
PERIOD_NAMES = {"24h": "24 hours", "7d": "7 days", "30d": "30 days"}


@dataclass(frozen=True)
class Panel:
    """A chart group of the page: its counted series, titled, and its CSV's name."""

    key: str
    title: str
    series: tuple[tuple[str, str, str], ...]  # (series, column, title)


PANELS = (
    Panel("deliveries", "Deliveries", ((history.DELIVERIES_APPLIED, "applied", "Deliveries applied"),
                                       (history.DELIVERIES_FAILED, "failed", "Deliveries failed (given up)"),
                                       (history.REJECTED_IDS, "rejected_ids", "Ids rejected"))),
    Panel("tracking", "Server-side tracking", ((history.TRACKING_SENT, "sent", "Events sent"),
                                               (history.TRACKING_FAILED, "failed", "Events failed"),
                                               (history.TRACKING_DROPPED, "dropped", "Events dropped (queue full)"))),
    Panel("erasures", "Erasure requests", ((history.ERASURES_REQUESTED, "requested", "Requests made"),
                                           (history.ERASURES_ACCEPTED, "accepted", "Deleted at Raptor (accepted)"),
                                           (history.ERASURES_GIVEN_UP, "given_up", "Given up"))),
    Panel("reconciles", "Reconciles", ((history.RECONCILES_OK, "ok", "Reconciles without a failure"),
                                       (history.RECONCILES_FAILED, "failed", "Reconciles with a failure"),
                                       (history.RECONCILE_CHANGES, "changes", "Memberships changed"))),
)
CHARTS = ("members", *(panel.key for panel in PANELS))


def _period() -> str:
    given = request.args.get("period", DEFAULT_PERIOD)
    if given not in history.PERIODS:
        abort(400, description=f"period must be one of {', '.join(history.PERIODS)}")
    return given


@dataclass(frozen=True)
class Figures:
    """What a page (or a CSV) shows: the period's buckets, a page of segments with their
    member counts in them (none for a CSV of counted series), and the counted series."""

    starts: list[datetime]
    segments: list[history.SegmentRow]
    has_more_segments: bool
    members: dict[int, list[int | None]]
    counts: dict[str, list[int]]


def _figures(period: str, page: int, *, with_members: bool = True) -> Figures:
    state = _state()
    now = utcnow()
    counted_series = [series for panel in PANELS for series, _, _ in panel.series]
    segments: list[history.SegmentRow] = []
    members: dict[int, list[int | None]] = {}
    with state.engine.connect() as conn:
        if with_members:
            segments = history.segments_page(conn, state.tables, (page - 1) * SEGMENTS_PER_PAGE, SEGMENTS_PER_PAGE + 1)
            members = history.member_counts(conn, state.tables, [row.id for row in segments[:SEGMENTS_PER_PAGE]],
                                            period, now)
        counts = history.counted(conn, state.tables, counted_series, period, now)
    return Figures(history.bucket_starts(period, now), segments[:SEGMENTS_PER_PAGE], len(segments) > SEGMENTS_PER_PAGE,
                   members, counts)


def dashboard() -> Any:
    period, page = _period(), page_number()
    figures = _figures(period, page)
    buckets = Buckets.of(history.PERIODS[period][0], figures.starts)
    lines: list[tuple[history.SegmentRow, Sparkline]] = [
        (row, sparkline(f"members-{row.id}", f"Members of {row.name} ({row.group}/{row.identifier})", buckets,
                        figures.members[row.id]))
        for row in figures.segments]
    panels: list[tuple[Panel, list[BarChart]]] = [
        (panel, [bar_chart(f"{panel.key}-{column}", title, buckets, figures.counts[series])
                 for series, column, title in panel.series])
        for panel in PANELS]
    return show("cdp/admin/dashboard.html", period=period, period_name=PERIOD_NAMES[period], periods=PERIOD_NAMES,
                 lines=lines, panels=panels, page=page, csv_url=csv_url,
                 pager=Pager(page, figures.has_more_segments, ".home", {"period": period}))


def dashboard_csv() -> Any:
    """One chart's figures as CSV (``?chart=members|deliveries|…&period=…``)."""
    chart = request.args.get("chart", "")
    if chart not in CHARTS:
        abort(400, description=f"chart must be one of {', '.join(CHARTS)}")
    period, page = _period(), page_number()
    figures = _figures(period, page, with_members=chart == "members")
    isos = Buckets.of(history.PERIODS[period][0], figures.starts).isos
    rows: Iterable[list[object]]
    if chart == "members":
        header = ["bucket", "group", "segment", "name", "members"]
        rows = [[iso, row.group, row.identifier, row.name, figures.members[row.id][index]]
                for row in figures.segments for index, iso in enumerate(isos)]
    else:
        panel = next(one for one in PANELS if one.key == chart)
        header = ["bucket", *(column for _, column, _ in panel.series)]
        rows = [[iso, *(figures.counts[series][index] for series, _, _ in panel.series)]
                for index, iso in enumerate(isos)]
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(header)
    writer.writerows([_spreadsheet_safe(value) for value in row] for row in rows)
    response = Response(text.getvalue(), mimetype="text/csv")
    response.headers["Content-Disposition"] = f'attachment; filename="cdp-{chart}-{period}.csv"'
    return response


def csv_url(chart: str, period: str, page: int) -> str:
    if page > 1:
        return url_for(".dashboard_csv", chart=chart, period=period, page=page)
    return url_for(".dashboard_csv", chart=chart, period=period)


#: A cell a spreadsheet would run as a formula starts with one of these (OWASP's "CSV injection").
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _spreadsheet_safe(value: object) -> object:
    """A name from the CDP that starts like a formula is written with a leading ``'``."""
    if isinstance(value, str) and value.startswith(_FORMULA_STARTS):
        return "'" + value
    return "" if value is None else value
