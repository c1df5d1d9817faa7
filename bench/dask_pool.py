"""(9) 100 trivial runs on a dask pool with 2 Dask workers, against the same on a process pool.

Both pools get a burst of 100 runs of the trivial notebook, created at once, with 4 runs at a time
(the process pool's embedded worker has limit 4; the dask worker has limit 4 and the 2 Dask workers
2 threads each). Figures: the burst's wall time per run, and each run's RUNNING → COMPLETED time
(medians); the dask path's per-run overhead is the difference of the latter medians.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from nbflows.workers.job_templates import default_base_job_template
from tests.dask_support import DaskCluster
from tests.servers import Server, start_server

from .harness import Result

RUNS = 100


def _burst(server: Server, ref: str, count: int) -> tuple[float, list[float]]:
    """Seconds from the first request to the last run COMPLETED, and each run's duration."""
    client = server.client()
    begin = time.perf_counter()
    ids = [client.create_flow_run_from_deployment(ref)["id"] for _ in range(count)]
    runs: list[dict[str, Any]] = [client.watch_flow_run(i, timeout=1800) for i in ids]
    wall = time.perf_counter() - begin
    durations = []
    for run_ in runs:
        assert run_["state"]["type"] == "COMPLETED", run_["state"]
        final = client.read_flow_run(run_["id"])
        start = datetime.fromisoformat(final["start_time"])
        end = datetime.fromisoformat(final["end_time"])
        durations.append((end - start).total_seconds())
    return wall, durations


def _dask_worker(server: Server, out: Path, pool: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, **server.env, "NBFLOWS_API_URL": server.api}
    env["NBFLOWS_API_TOKEN"] = server.token
    return subprocess.Popen(
        [sys.executable, "-m", "nbflows.cli.app", "worker", "start", "--pool", pool, "--limit=4"],
        stdout=out.open("wb"),
        stderr=subprocess.STDOUT,
        env=env,
        cwd=server.root,
    )


def run(repeat: int | None = None) -> list[Result]:
    count = repeat or RUNS
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        cluster = DaskCluster(tmp / "dask").start()
        server = start_server(tmp / "srv")
        worker = None
        try:
            cluster.add_worker("a")
            cluster.add_worker("b")
            cluster.wait_for_workers(2)
            client = server.client()
            client.create_work_pool("bench-process", "process")
            client.deploy(path="trivial.ipynb", name="process", work_pool_name="bench-process")
            template = default_base_job_template("dask")
            template["variables"]["properties"]["scheduler_address"]["default"] = cluster.address
            client.create_work_pool("bench-dask", "dask", base_job_template=template)
            client.deploy(path="trivial.ipynb", name="dask", work_pool_name="bench-dask")
            worker = _dask_worker(server, tmp / "worker.out", "bench-dask")
            # Warm-up: connections, imports on the Dask workers, spare kernels.
            _burst(server, "trivial/dask", 4)
            _burst(server, "trivial/process", 4)
            dask_wall, dask_runs = _burst(server, "trivial/dask", count)
            process_wall, process_runs = _burst(server, "trivial/process", count)
        finally:
            if worker is not None:
                worker.terminate()
                worker.wait(60)
            server.stop()
            cluster.stop()
    overhead = statistics.median(dask_runs) - statistics.median(process_runs)
    return [
        Result(
            name=f"{count} trivial runs at once, wall time per run (dask pool, 2 Dask workers)",
            unit="s",
            samples=[dask_wall / count],
            target="—",
            reference="the same burst on a process pool",
            reference_samples=[process_wall / count],
        ),
        Result(
            name="one run of the burst, RUNNING → COMPLETED (dask pool)",
            unit="s",
            samples=dask_runs,
            target="—",
            reference="the same on a process pool",
            reference_samples=process_runs,
            notes=f"per-run overhead of the dask path (difference of medians): {overhead:.3f} s",
        ),
    ]
