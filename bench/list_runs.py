"""(6) API latency of listing runs with 1,000,000 runs in the store (through a real server)."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from nbflows.store.db import Database
from tests.servers import start_server

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
            client = server.client()  # one keep-alive connection, as the CLI and widgets have
            queries = {
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
                        name=f"GET flow_runs ({label}), 1,000,000 runs",
                        unit="s",
                        samples=samples,
                        target="interactive (< 50 ms)",
                        notes=f"store filled in {fill:.0f} s" if label == "newest 50" else "",
                    )
                )
            return results
        finally:
            server.stop()
