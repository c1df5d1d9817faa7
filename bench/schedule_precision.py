"""(8) Schedule precision: how late a due scheduled run starts, against its scheduled time.

A deployment with an interval schedule (every 2 s) on a server with its embedded worker; for each
run that became due while measuring, the RUNNING time the server stored minus the run's
expected start time. On SQLite, and on PostgreSQL when its binaries are installed (a cluster
started the way the tests start one). Both clocks are the server's: no clock skew.
"""

from __future__ import annotations

import tempfile
import time
from datetime import datetime
from pathlib import Path

from tests.servers import Server, start_server

from .harness import Result

INTERVAL = 2.0
#: The server's minimum schedule interval (10 s by default) would refuse a 2 s schedule.
FAST = {"NBFLOWS_MIN_SCHEDULE_INTERVAL": "0"}


def _lateness(server: Server, seconds: float) -> list[float]:
    client = server.client()
    client.create_work_pool("sched", "process")
    client.deploy(
        path="trivial.ipynb",
        name="every-2s",
        work_pool_name="sched",
        schedules=[{"kind": "interval", "interval": INTERVAL}],
    )
    time.sleep(seconds)
    # Runs are created an hour ahead: ask for the ones that started (the list is newest first).
    started_states = ["RUNNING", "COMPLETED", "FAILED", "CRASHED", "CANCELLED"]
    runs = client.list_flow_runs(work_pool_name="sched", state=started_states, limit=1000)
    timed = []
    for run in runs:
        if not run.get("start_time") or not run.get("expected_start_time"):
            continue
        started = datetime.fromisoformat(run["start_time"])
        expected = datetime.fromisoformat(run["expected_start_time"])
        timed.append((expected, (started - expected).total_seconds()))
    timed.sort()
    # The first runs wait for the worker's first kernel and its template: not a steady state.
    return [late for _, late in timed[3:]]


def _p99(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]


def run(repeat: int | None = None) -> list[Result]:
    seconds = 20.0 * (repeat or 3)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        server = start_server(Path(tmp), env=FAST)
        try:
            sqlite = _lateness(server, seconds)
        finally:
            server.stop()
    results.append(_result("SQLite", sqlite))
    from tests.pg_support import postgres_server

    try:
        with tempfile.TemporaryDirectory() as tmp, postgres_server() as url:
            server = start_server(Path(tmp), db_url=url, env=FAST)
            try:
                pg = _lateness(server, seconds)
            finally:
                server.stop()
        results.append(_result("PostgreSQL", pg))
    except BaseException as err:  # pytest's skip when PostgreSQL is not installed
        if type(err).__name__ != "Skipped":
            raise
        print(f"  schedule precision on PostgreSQL skipped: {err}")
    return results


def _result(backend: str, late: list[float]) -> Result:
    return Result(
        name=f"schedule precision on {backend}: start - scheduled time",
        unit="s",
        samples=late,
        target="≤ 1 s at p99",
        notes=(
            f"{backend}: p99 {_p99(late) * 1000:.0f} ms, max {max(late) * 1000:.0f} ms over "
            f"{len(late)} runs every {INTERVAL:g} s (start = RUNNING stored by the server)"
        ),
    )
