"""The back office dashboard (issue 43): the history the writers keep, the SVG charts and
their CSV, the periods, and the history's retention; on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
import re
from datetime import datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from freezegun import freeze_time
from sqlalchemy import func, select

from cdp_bridge.store import history
from cdp_bridge.store.history import DAY, HOUR, HistoryPruning, bucket_start
from cdp_bridge.store.senders import SenderReports
from cdp_bridge.store.tables import utcnow
from cdp_bridge.tracking.sender import SenderCounts
from tests.support.webhook import ACTIVATION, cdp_of, post_webhook

ADMIN = {"X-Admin": "yes"}


@pytest.fixture
def shop(make_app) -> Flask:
    """Activation ``shop``, a back office that admits ``X-Admin: yes``; deliveries of 10
    ids or more are queued for the worker (run here by hand)."""
    from flask import request

    app = make_app(CDP_INLINE_WORKER=False, CDP_BULK_ASYNC_THRESHOLD=10, **ACTIVATION)
    cdp_of(app).admin_guard(lambda: request.headers.get("X-Admin") == "yes")
    with app.app_context():
        app.extensions["cdp"].store.create_group("shop", "Shop")
    return app


def deliver(app: Flask, *audiences: dict[str, Any]) -> None:
    answer = post_webhook(app, {"audiences": list(audiences)})
    assert answer.status_code in (200, 202), answer.get_json()
    if answer.status_code == 202:  # queued: the worker applies it
        with app.app_context():
            state = app.extensions["cdp"]
            assert state.inbox.process(state.inbox.claim("test-worker"), "test-worker") == "applied"


def recorded_and_counted(app: Flask) -> dict[str, tuple[int | None, int | None, int]]:
    """Each segment: its figure for this hour and this day in the history, and count(*)."""
    with app.app_context():
        state = app.extensions["cdp"]
        s, m, h = state.tables.segments, state.tables.memberships, state.tables.history
        now = utcnow()
        found = {}
        with state.engine.connect() as conn:
            for segment_id, identifier in conn.execute(select(s.c.id, s.c.identifier)):
                figure = {period: conn.scalar(select(h.c.value).where(
                    h.c.series == history.MEMBERS, h.c.subject == segment_id, h.c.period == period,
                    h.c.bucket == bucket_start(period, now))) for period in (HOUR, DAY)}
                counted = conn.scalar(select(func.count()).where(m.c.segment_id == segment_id))
                found[identifier] = (figure[HOUR], figure[DAY], counted)
        return found


def test_the_counts_recorded_by_webhook_add_remove_replace_match_a_count_at_every_step(shop: Flask) -> None:
    steps = [
        ({"id": "vip", "name": "VIP", "members": ["1", "2", "3"]}, {"vip": 3}),               # replace (a new segment)
        ({"id": "vip", "add": ["3", "4", "5"]}, {"vip": 5}),                                   # add, one already in
        ({"id": "vip", "remove": ["1", "9"]}, {"vip": 4}),                                     # remove, one never in
        ({"id": "cats", "name": "Cats", "add": [f"c{n}" for n in range(12)]}, {"cats": 12}),  # queued: the worker
        ({"id": "cats", "members": ["c1", "c2", "x"]}, {"cats": 3}),                           # replace
        ({"id": "cats", "add": ["c1"]}, {"cats": 3}),                                          # changes nothing
        ({"id": "vip", "members": []}, {"vip": 0}),                                            # emptied
    ]
    for change, expected in steps:
        deliver(shop, change)
        found = recorded_and_counted(shop)
        for segment, count in expected.items():
            assert found[segment] == (count, count, count), (change, found)
        assert all(hour == day == counted for hour, day, counted in found.values()), (change, found)


def test_a_deleted_segment_takes_its_figures_with_it(shop: Flask) -> None:
    deliver(shop, {"id": "gone", "name": "Gone", "members": ["1", "2"]})
    deliver(shop, {"id": "gone", "deleted": True})
    with shop.app_context():
        state = shop.extensions["cdp"]
        with state.engine.connect() as conn:
            assert conn.scalar(select(func.count()).select_from(state.tables.history)
                               .where(state.tables.history.c.series == history.MEMBERS)) == 0


def bar_figures(page: str) -> dict[str, list[tuple[str, int]]]:
    """Each bar chart's bars, as the SVG carries them: (bucket, value) in order."""
    charts = {}
    for key, body in re.findall(r'<svg [^>]*class="bars" data-series="([^"]+)">(.*?)</svg>', page, re.S):
        charts[key] = [(bucket, int(value)) for bucket, value in
                       re.findall(r'data-bucket="([^"]+)"\s+data-value="(\d+)"', body)]
    return charts


def line_figures(page: str) -> dict[str, list[tuple[str, int | None]]]:
    """Each sparkline's figures by its title: (bucket, value or None) in order."""
    lines = {}
    for figures, title in re.findall(r'data-figures="([^"]*)">\s*<title id="[^"]+">([^<]+)</title>', page):
        pairs = [pair.split("=") for pair in figures.split()]
        lines[title] = [(bucket, int(value) if value else None) for bucket, value in pairs]
    return lines


def csv_rows(client, chart: str, period: str) -> list[dict[str, str]]:
    answer = client.get(f"/cdp/admin/dashboard.csv?chart={chart}&period={period}", headers=ADMIN)
    assert answer.status_code == 200 and answer.mimetype == "text/csv"
    assert f'filename="cdp-{chart}-{period}.csv"' in answer.headers["Content-Disposition"]
    return list(csv.DictReader(io.StringIO(answer.get_data(as_text=True))))


def test_the_svg_figures_match_the_csv_and_the_deliveries_made(shop: Flask) -> None:
    with freeze_time("2026-12-01 09:30:00") as clock:
        deliver(shop, {"id": "vip", "name": "VIP", "members": ["1", "2"]})
        deliver(shop, {"id": "vip", "add": ["3", None]})  # None: one id rejected
        clock.move_to("2026-12-03 14:10:00")
        deliver(shop, {"id": "vip", "remove": ["1"]})
        clock.move_to("2026-12-04 08:00:00")
        deliver(shop, {"id": "cats", "name": "=HYPERLINK(\"x\")", "add": ["7"]})  # a name a spreadsheet would run
        clock.move_to("2026-12-04 20:05:00")
        client = shop.test_client()
        week = client.get("/cdp/admin/?period=7d", headers=ADMIN).get_data(as_text=True)
        day = client.get("/cdp/admin/?period=24h", headers=ADMIN).get_data(as_text=True)
        month_csv = {chart: csv_rows(client, chart, "30d") for chart in ("deliveries", "members")}
        week_csv = {chart: csv_rows(client, chart, "7d") for chart in ("deliveries", "members", "tracking")}
        day_csv = csv_rows(client, "members", "24h")

    bars = bar_figures(week)
    applied = [(row["bucket"], int(row["applied"])) for row in week_csv["deliveries"]]
    assert bars["deliveries-applied"] == applied
    assert bars["deliveries-rejected_ids"] == [(row["bucket"], int(row["rejected_ids"])) for row in week_csv["deliveries"]]
    assert bars["tracking-sent"] == [(row["bucket"], int(row["sent"])) for row in week_csv["tracking"]]
    assert dict(applied) == {"2026-11-28T00:00:00Z": 0, "2026-11-29T00:00:00Z": 0, "2026-11-30T00:00:00Z": 0,
                             "2026-12-01T00:00:00Z": 2, "2026-12-02T00:00:00Z": 0, "2026-12-03T00:00:00Z": 1,
                             "2026-12-04T00:00:00Z": 1}
    assert dict(bars["deliveries-rejected_ids"])["2026-12-01T00:00:00Z"] == 1
    assert "Deliveries applied: 4 in all. 2026-11-28: 0;" in week  # the text alternative names the figures
    assert sum(int(row["applied"]) for row in month_csv["deliveries"]) == 4 and len(month_csv["deliveries"]) == 30

    lines = line_figures(week)
    vip = [(row["bucket"], int(row["members"]) if row["members"] else None)
           for row in week_csv["members"] if row["segment"] == "vip"]
    assert lines["Members of VIP (shop/vip)"] == vip
    assert [figure for _, figure in vip] == [None, None, None, 3, 3, 2, 2]  # carried over the days without a change
    # The 24 hours from 21:00 yesterday: vip's figure of Dec 3 carried in, cats' first at 08:00.
    day_lines = line_figures(day)
    assert {figure for _, figure in day_lines["Members of VIP (shop/vip)"]} == {2}
    cats = [int(row["members"]) if row["members"] else None for row in day_csv if row["segment"] == "cats"]
    assert cats[:11] == [None] * 11 and cats[11:] == [1] * 13
    names = {row["name"] for row in week_csv["members"]}
    assert names == {"VIP", "'=HYPERLINK(\"x\")"}  # written so that a spreadsheet shows it, not runs it
    vip_row = re.search(r'members\?segment=vip">VIP</a>.*?</tr>', week, re.S).group(0)
    assert re.search(r"<td>2</td>\s*<td>-1</td>", vip_row), vip_row  # members now; since the week's first figure


@pytest.mark.parametrize(("query", "problem"), [("period=1y", "period must be one of 24h, 7d, 30d"),
                                                ("period=7d&chart=secrets", "chart must be one of members")])
def test_a_period_or_chart_it_does_not_know_is_refused_by_name(shop: Flask, query: str, problem: str) -> None:
    path = "/cdp/admin/dashboard.csv?" if "chart" in query else "/cdp/admin/?"
    answer = shop.test_client().get(path + query, headers=ADMIN)
    assert answer.status_code == 400 and problem in answer.get_data(as_text=True)


def test_the_dashboard_is_guarded_like_every_back_office_page(shop: Flask) -> None:
    client = shop.test_client()
    assert client.get("/cdp/admin/").status_code == 403
    assert client.get("/cdp/admin/dashboard.csv?chart=members").status_code == 403
    assert client.get("/cdp/admin/", headers=ADMIN).status_code == 200


def test_tracking_and_erasure_counts_reach_the_dashboard(shop: Flask) -> None:
    deliver(shop, {"id": "vip", "name": "VIP", "members": ["1", "2"]})
    with shop.app_context():
        state = shop.extensions["cdp"]
        report = SenderReports(state.engine, state.tables, lambda: "host:1:abc")
        report(SenderCounts(sent=5, failed=1, dropped=0, queued=0))
        report(SenderCounts(sent=8, failed=1, dropped=2, queued=0))  # the counts since it started: 3 more sent
        state.erasures.forget(user_id="1")
    client = shop.test_client()
    tracking = csv_rows(client, "tracking", "24h")[-1]
    assert (tracking["sent"], tracking["failed"], tracking["dropped"]) == ("8", "1", "2")
    erasures = csv_rows(client, "erasures", "24h")[-1]
    assert erasures["requested"] == "1"
    members = [row for row in csv_rows(client, "members", "24h") if row["segment"] == "vip"]
    assert members[-1]["members"] == "1"  # forgetting removed one membership: recorded too


def test_the_history_is_kept_for_cdp_history_days(make_app) -> None:
    app = make_app(CDP_HISTORY_DAYS="30")
    with app.app_context():
        state = app.extensions["cdp"]
        assert state.settings.site.history_days == 30
        for days_ago in (45, 31, 29, 0):
            with freeze_time(datetime(2026, 12, 5, 12) - timedelta(days=days_ago)), state.engine.begin() as conn:
                history.add_counts(conn, state.tables, {history.DELIVERIES_APPLIED: 1})
        with freeze_time("2026-12-05 12:00:00"):
            job = next(job for job in state.queue_jobs() if isinstance(job, HistoryPruning))
            assert job.run_due(lambda: "w", lambda: False).deleted == 4  # an hour's and a day's row, twice
            assert job.run_due(lambda: "w", lambda: False).deleted == 0  # not again within the hour
        with state.engine.connect() as conn:
            buckets = sorted(conn.scalars(select(state.tables.history.c.bucket)
                                          .where(state.tables.history.c.period == DAY)))
        assert buckets == [datetime(2026, 11, 6), datetime(2026, 12, 5)]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_database_without_on_conflict_keeps_the_same_figures(shop: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    """The path for databases that have no ``ON CONFLICT`` (no dedicated writer), taken on
    SQLite by saying it has none: the bucket's figures are replaced, and counts added."""
    monkeypatch.setattr(history, "conflict_insert", lambda dialect, table: None)
    history._members_statement.cache_clear()  # made for SQLite's upsert by earlier tests
    try:
        with freeze_time("2026-12-05 00:30:00") as clock:  # midnight: the hour's and the day's bucket start alike
            for change, count in (({"id": "vip", "name": "VIP", "members": ["1", "2", "3"]}, 3),
                                  ({"id": "vip", "remove": ["1"]}, 2)):
                deliver(shop, change)
                assert recorded_and_counted(shop)["vip"] == (count, count, count)
            clock.move_to("2026-12-05 09:10:00")
            deliver(shop, {"id": "vip", "add": ["7", "8"]})
            assert recorded_and_counted(shop)["vip"] == (4, 4, 4)
            rows = csv_rows(shop.test_client(), "members", "24h")
            assert [row["members"] for row in rows if row["bucket"].startswith("2026-12-05T0")] == [
                "2", "2", "2", "2", "2", "2", "2", "2", "2", "4"]  # 00:00 kept its figure when 09:00 was written
            assert csv_rows(shop.test_client(), "deliveries", "24h")[-1]["applied"] == "1"
            assert sum(int(row["applied"]) for row in csv_rows(shop.test_client(), "deliveries", "7d")) == 3
    finally:
        history._members_statement.cache_clear()
