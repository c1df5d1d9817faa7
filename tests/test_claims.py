"""Claims under contention, on SQLite and on PostgreSQL: every run handed out exactly once."""

from __future__ import annotations

import shutil
import threading
from collections import Counter
from pathlib import Path

from sqlalchemy import select

from nbflows.scheduling import scheduler as scheduling
from nbflows.services import claims, deployments, flow_runs
from nbflows.services import work_pools as pools
from nbflows.services.schemas.bodies import DeployRequest, RunRequest, WorkPoolCreate
from nbflows.store import tables as t
from nbflows.store.db import Database

NOTEBOOK = Path(__file__).parents[1] / "notebooks" / "trivial.ipynb"


def seed(db: Database, root: Path, runs: int, schedule: bool = False) -> str:
    shutil.copy(NOTEBOOK, root / "trivial.ipynb")
    with db.session() as s:
        pools.create_work_pool(s, WorkPoolCreate(name="p", type="process"))
        d, _ = deployments.deploy(
            s,
            DeployRequest(
                path="trivial.ipynb",
                name="d",
                work_pool_name="p",
                schedules=[{"kind": "cron", "cron": "* * * * *"}] if schedule else [],
            ),
            str(root),
        )
        for _ in range(runs):
            flow_runs.create_deployment_run(s, d, RunRequest())
        return d.id


def test_concurrent_workers_never_double_claim(database: Database, tmp_path: Path) -> None:
    seed(database, tmp_path, runs=200)
    got: list[list[str]] = [[] for _ in range(8)]
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        try:
            while True:
                with database.session() as s:
                    batch = claims.claim_next_runs(s, "p", f"w{i}", None, 3)
                if not batch:
                    return
                got[i].extend(c["flow_run"]["id"] for c in batch)
        except BaseException as err:  # surfaced below
            errors.append(err)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors, errors
    counts = Counter(run_id for ids in got for run_id in ids)
    assert len(counts) == 200
    assert max(counts.values()) == 1, "a run was claimed twice"


def test_scheduler_passes_are_idempotent(database: Database, tmp_path: Path) -> None:
    seed(database, tmp_path, runs=0, schedule=True)
    with database.session() as s:
        first = scheduling.schedule_runs(s)
    assert first.created >= 3
    with database.session() as s:
        row = s.scalars(select(t.DeploymentSchedule)).one()
        row.scheduled_until = None  # force a full re-computation, as a second server would do
    with database.session() as s:
        second = scheduling.schedule_runs(s)
    assert second.created == 0
    with database.session() as s:
        runs = flow_runs.list_flow_runs(s, state=["SCHEDULED"], limit=1000)
        times = [r.expected_start_time for r in runs]
    assert len(times) == first.created == len(set(times))
