"""(5) One scheduler pass over 10,000 cron deployments (target ≤ 1 s), and the whole pass
(schedules, late runs, the stuck-run detector) with 5,000 dead worker rows present; on
PostgreSQL (skipped without its binaries), the pass over 100,000 cron deployments (≤ 5 s)."""

from __future__ import annotations

import tempfile
from datetime import timedelta
from pathlib import Path

from sqlalchemy import delete, insert, select, text, update

from nbflows.scheduling import scheduler as scheduling
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
        dead = _whole_pass_with_dead_workers(db, repeat)
        db.dispose()
    postgres = _postgres_pass(repeat)
    return [
        dead,
        *postgres,
        Result(
            name="scheduler pass, 10,000 cron deployments",
            unit="s",
            samples=samples,
            target="≤ 1 s",
            notes=f"each pass created {created:,} runs (1 h ahead, at least the next one per schedule); "
            f"a following pass with nothing due took {steady() * 1000:.0f} ms and created {again}",
        ),
    ]


DEAD_WORKERS = 5_000


def _whole_pass_with_dead_workers(db: Database, repeat: int) -> Result:
    """The server's pass every `scheduler_interval` (5 s) with 5,000 dead worker rows (offline
    for 10 minutes, not expired yet) and 200 runs held by live workers."""
    from nbflows.extension.lifecycle import scheduler_pass

    now = t.utcnow()
    with db.session() as s:
        pool_id = s.scalar(select(t.WorkPool.id))
        s.execute(
            insert(t.Worker),
            [
                {
                    "work_pool_id": pool_id,
                    "name": f"process-worker-host-{pid}",
                    "last_heartbeat": now - timedelta(minutes=10),
                    "online_until": now - timedelta(minutes=10) + timedelta(seconds=15),
                    "heartbeat_interval": 5.0,
                }
                for pid in range(DEAD_WORKERS)
            ],
        )
        live = [{"work_pool_id": pool_id, "name": f"live-{i}"} for i in range(2)]
        for row in live:
            row.update(
                last_heartbeat=now, online_until=now + timedelta(hours=1), heartbeat_interval=5
            )
        s.execute(insert(t.Worker), live)
        runs = s.scalars(select(t.FlowRun).limit(200)).all()
        for i, run in enumerate(runs):
            run.state_type, run.state_name = "RUNNING", "Running"
            run.worker_name = f"live-{i % 2}"
    with db.session() as s:
        scheduler_pass(s)  # warm up
    samples = []
    for _ in range(repeat):
        with stopwatch() as elapsed, db.session() as s:
            scheduler_pass(s)
        samples.append(elapsed())
    with db.session() as s:
        left = s.scalar(select(t.Worker.name).where(t.Worker.name.like("process-worker-%")))
    return Result(
        name=f"whole scheduler pass, {DEAD_WORKERS:,} dead worker rows",
        unit="s",
        samples=samples,
        target="≤ 1 s (was 4.2 s)",
        notes="10,000 cron deployments, 200 runs held by 2 live workers; dead rows "
        + ("kept until their TTL" if left else "expired"),
    )


PG_DEPLOYMENTS = 100_000


def _postgres_pass(repeat: int) -> list[Result]:
    """The creation pass over 100,000 cron deployments on PostgreSQL (filled in SQL)."""
    import time

    from tests.pg_support import postgres_server

    from . import pg_fill

    try:
        with postgres_server() as url:
            db = Database(url)
            began = time.perf_counter()
            pg_fill.deployments(db, PG_DEPLOYMENTS, CRONS)
            fill = time.perf_counter() - began
            samples, created = [], 0
            server_cpu: list[float] = []  # CPU seconds of the pass's PostgreSQL backend
            client_cpu: list[float] = []  # and of this process: load-independent figures
            for i in range(min(repeat, 3) + 1):  # each pass inserts ~175,000 runs
                with db.session() as s:
                    s.execute(delete(t.FlowRun))
                    s.execute(update(t.DeploymentSchedule).values(scheduled_until=None))
                # What autovacuum does to a store's dead rows: the pass is timed against live
                # rows only, not the 175,000 just deleted (which its unique checks would visit).
                with db.engine.connect() as c:
                    c.execution_options(isolation_level="AUTOCOMMIT")
                    c.execute(text("VACUUM flow_runs, deployment_schedules"))
                with stopwatch() as elapsed, db.session() as s:
                    backend = s.connection().exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
                    cpu = _cpu_seconds(backend), time.process_time()
                    created = scheduling.schedule_runs(s).created
                    server_cpu.append(_cpu_seconds(backend) - cpu[0])
                    client_cpu.append(time.process_time() - cpu[1])
                if i:
                    samples.append(elapsed())
            with stopwatch() as steady, db.session() as s:
                again = scheduling.schedule_runs(s).created
            db.dispose()
    except BaseException as err:  # pytest's skip when PostgreSQL is not installed
        if type(err).__name__ != "Skipped":
            raise
        print(f"  scheduler pass on PostgreSQL skipped: {err}")
        return []
    return [
        Result(
            name=f"scheduler pass, {PG_DEPLOYMENTS:,} cron deployments, PostgreSQL",
            unit="s",
            samples=samples,
            target="≤ 5 s",
            notes=f"each pass created {created:,} runs; a following pass with nothing due took "
            f"{steady() * 1000:.0f} ms and created {again}; deployments filled in {fill:.0f} s; "
            "runs of the previous pass deleted and vacuumed before each; CPU per pass (median): "
            f"PostgreSQL backend {sorted(server_cpu)[len(server_cpu) // 2]:.2f} s, "
            f"Python {sorted(client_cpu)[len(client_cpu) // 2]:.2f} s",
        )
    ]


def _cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system) of process `pid` so far, from /proc."""
    import os

    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
