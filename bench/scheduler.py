"""(5) One scheduler pass over 10,000 cron deployments (target ≤ 1 s)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from sqlalchemy import delete, update

from nbflows import scheduling
from nbflows.store import tables as t
from nbflows.store.db import Database

from .fixtures import pool_with_deployments
from .harness import Result, stopwatch

CRONS = ["0 6 * * *", "0 * * * *", "*/15 * * * *", "30 2 * * 1-5"]


def run(repeat: int | None = None) -> list[Result]:
    repeat = repeat or 5
    with tempfile.TemporaryDirectory() as tmp:
        db = Database(f"sqlite:///{Path(tmp) / 'sched.db'}")
        pool_with_deployments(db, 10_000, CRONS)
        samples, created = [], 0
        for i in range(repeat + 1):
            with db.session() as s:  # forget the previous pass: every schedule is due again
                s.execute(delete(t.FlowRun))
                s.execute(update(t.DeploymentSchedule).values(scheduled_until=None))
            with stopwatch() as elapsed, db.session() as s:
                created = scheduling.schedule_runs(s).created
            if i:  # the first pass warms caches
                samples.append(elapsed())
        with stopwatch() as steady, db.session() as s:
            again = scheduling.schedule_runs(s).created
        db.dispose()
    return [
        Result(
            name="scheduler pass, 10,000 cron deployments",
            unit="s",
            samples=samples,
            target="≤ 1 s",
            notes=f"each pass created {created:,} runs (1 h ahead, at least the next one per schedule); "
            f"a following pass with nothing due took {steady() * 1000:.0f} ms and created {again}",
        )
    ]
