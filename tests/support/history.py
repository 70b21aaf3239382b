"""Reading the dashboard's history back in tests."""

from __future__ import annotations

from flask import Flask
from sqlalchemy import func, select

from cdp_bridge.store.history import DAY, bucket_start
from cdp_bridge.store.tables import utcnow


def figure_today(app: Flask, series: str) -> int:
    """A counted series' figure for today, the sum of its shards (0 when nothing was counted)."""
    with app.app_context():
        state = app.extensions["cdp"]
        h = state.tables.history
        with state.engine.connect() as conn:
            found = conn.scalar(select(func.sum(h.c.value)).where(h.c.series == series, h.c.period == DAY,
                                                                  h.c.bucket == bucket_start(DAY, utcnow())))
    return int(found or 0)
