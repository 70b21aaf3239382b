"""``CDP_RECONCILE_SCHEDULE``: ``flask cdp worker`` runs the reconcile on a cron schedule.

The job is due when the schedule's next time after its last run has passed. The workers
of a fleet share ``cdp_schedule_runs``: a worker takes a due run by moving ``last_run_at``
forward from the value it read (compare and set), so exactly one of them runs it. The
first time, the schedule starts from now (a new worker does not run it at once).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from cronsim import CronSim
from sqlalchemy import Engine, select, update

from ..store.tables import CDPTables, utcnow
from ..store.upserts import insert_skipping_conflicts
from .runner import Reconciler, RunReport

log = logging.getLogger("cdp_bridge.reconcile")

JOB_NAME = "reconcile"


@dataclass
class ScheduledRuns:
    """What one pass of the scheduled reconcile did."""

    reports: list[RunReport] = field(default_factory=list)

    def summary(self) -> str:
        if not self.reports:
            return "reconcile: not due"
        return "; ".join(f"reconcile of {report.group}: {'failed' if report.failed else 'ok'}" for report in self.reports)


class ScheduledReconcile:
    """The worker's job: reconcile ``groups`` when the cron expression says."""

    name = "reconcile"

    def __init__(self, engine: Engine, tables: CDPTables, schedule: str, groups: Sequence[str],
                 reconciler: Callable[[], Reconciler]) -> None:
        self.engine = engine
        self.tables = tables
        self.schedule = schedule
        self.groups = list(groups)
        self._reconciler = reconciler

    def describe(self) -> str:
        return f"reconcile (cron {self.schedule!r}, UTC; groups {', '.join(self.groups)})"

    def run_due(self, worker: Callable[[], str], stop: Callable[[], bool]) -> ScheduledRuns:
        runs = ScheduledRuns()
        if stop() or not self._take_due_run(utcnow()):
            return runs
        reconciler = self._reconciler()
        for group in self.groups:
            report = reconciler.run(group)
            log.info("scheduled reconcile of group %s: %s", group, "failed" if report.failed else "done")
            runs.reports.append(report)
        reconciler.client.close()
        return runs

    def _take_due_run(self, now: datetime) -> bool:
        s = self.tables.schedule_runs
        with self.engine.begin() as conn:
            last = conn.scalar(select(s.c.last_run_at).where(s.c.name == JOB_NAME))
            if last is None:
                # another worker may start the schedule at the same moment: its row stands
                conn.execute(insert_skipping_conflicts(conn.dialect.name, s, ["name"]).values(name=JOB_NAME,
                                                                                               last_run_at=now))
                return False
            if next(CronSim(self.schedule, last)) > now:
                return False
            taken = conn.execute(update(s).where(s.c.name == JOB_NAME, s.c.last_run_at == last).values(last_run_at=now))
            return taken.rowcount == 1

    def close(self) -> None:
        """Nothing kept open between runs."""
