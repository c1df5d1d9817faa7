"""(6) API latency of listing runs with 1,000,000 runs in the store (through a real server), and
the dashboard's run list loaded in Chromium (`bench.dashboard`); on
PostgreSQL (skipped without its binaries) with as many runs as `generate_series` stores within
the fill budget, up to 10,000,000 (NBFLOWS_BENCH_PG_RUNS, NBFLOWS_BENCH_PG_FILL_SECONDS)."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

from nbflows.store.db import Database
from tests.servers import start_server

from . import dashboard
from .fixtures import many_runs
from .harness import Result

RUNS = 1_000_000


def run(repeat: int | None = None) -> list[Result]:
    repeat = repeat or 20
    with tempfile.TemporaryDirectory() as tmp:
        db_url = f"sqlite:///{Path(tmp) / 'runs.db'}"
        db = Database(db_url)
        started = time.perf_counter()
        deployment_ids = many_runs(db, RUNS)
        fill = time.perf_counter() - started
        db.dispose()
        server = start_server(Path(tmp) / "srv", embedded_worker=False, db_url=db_url)
        try:
            results = _queries(server, deployment_ids, RUNS, repeat, "")
            results[0].notes = f"store filled in {fill:.0f} s"
            results += dashboard.run_list(server, RUNS, min(repeat, 10), "", "interactive")
        finally:
            server.stop()
    return [*results, *_postgres(repeat)]


def _queries(
    server: Any, deployment_ids: list[str], count: int, repeat: int, where: str
) -> list[Result]:
    client = server.client()  # one keep-alive connection, as the CLI and widgets have
    queries: dict[str, dict[str, Any]] = {
        "newest 50": {"limit": 50},
        "by state": {"state": "FAILED", "limit": 50},
        "by deployment": {"deployment_id": deployment_ids[3], "limit": 50},
        "page 100": {"limit": 50, "offset": 5000},
    }
    results = []
    for label, params in queries.items():
        samples = []
        for i in range(repeat + 2):
            begin = time.perf_counter()
            runs = client.list_flow_runs(**params)
            elapsed = time.perf_counter() - begin
            assert len(runs) == 50, runs
            if i >= 2:
                samples.append(elapsed)
        results.append(
            Result(
                name=f"GET flow_runs ({label}), {count:,} runs{where}",
                unit="s",
                samples=samples,
                target="≤ 20 ms" if where else "interactive (< 50 ms)",
            )
        )
    return results


PG_RUNS = int(os.environ.get("NBFLOWS_BENCH_PG_RUNS", "10000000"))
PG_FILL_SECONDS = float(os.environ.get("NBFLOWS_BENCH_PG_FILL_SECONDS", "240"))


def _postgres(repeat: int) -> list[Result]:
    from tests.pg_support import postgres_server

    from . import pg_fill

    try:
        with tempfile.TemporaryDirectory() as tmp, postgres_server() as url:
            db = Database(url)
            count, deployment_ids, fill = pg_fill.runs(db, PG_RUNS, PG_FILL_SECONDS)
            db.dispose()
            print(f"  PostgreSQL: {count:,} runs stored in {fill:.0f} s", flush=True)
            server = start_server(Path(tmp) / "srv", embedded_worker=False, db_url=url)
            try:
                results = _queries(server, deployment_ids, count, repeat, ", PostgreSQL")
                where = ", PostgreSQL"
                results += dashboard.run_list(server, count, min(repeat, 10), where, "≤ 200 ms")
            finally:
                server.stop()
    except BaseException as err:  # pytest's skip when PostgreSQL is not installed
        if type(err).__name__ != "Skipped":
            raise
        print(f"  run list on PostgreSQL skipped: {err}")
        return []
    results[0].notes = (
        f"{count:,} runs (of {PG_RUNS:,} asked; as many as {PG_FILL_SECONDS:g} s of "
        f"generate_series filled) in {fill:.0f} s"
    )
    return results
