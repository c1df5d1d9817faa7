"""(9) Server outages with runs in flight: nothing lost, nothing run twice, nothing wrongly CRASHED.

    python -m bench outage            # 200 runs, 2 workers; a kill -9 and a 60 s outage
    python -m bench.outage --runs 60 --outage 20 --limit 6

A server without an embedded worker, two standalone `nbflows worker start` processes and a
deployment (retries 1) whose run leaves one marker file per execution and prints one line a
second. All runs are created at once; while they execute, the server is killed with -9 and
restarted at once, and later killed with -9 and restarted after `--outage` seconds. Then every
run is checked: COMPLETED on attempt 1, one execution (marker files), its executed notebook
stored, each printed line stored exactly once.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from tests.servers import Server, start_server
from tests.test_outages import TICKING, Worker, restart, state_of, write_notebook

from .harness import Result

TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def scenario(
    tmp: Path, *, runs: int, outage: float, limit: int, ticks: int, say: Any = print
) -> dict[str, Any]:
    server = start_server(tmp / "srv", embedded_worker=False)
    workers: list[Worker] = []
    try:
        cells = [(f"ticks = {ticks}\nmarkers = 'markers'", ["parameters"]), TICKING[1]]
        write_notebook(server.root / "ticking.ipynb", cells)
        with server.client() as api:
            api.create_work_pool("p", "process")
            api.deploy(path="ticking.ipynb", name="d", work_pool_name="p", retries=1)
        workers = [
            Worker(
                server,
                tmp / f"worker-{i}.out",
                "--pool",
                "p",
                "--name",
                f"w{i}",
                "--limit",
                str(limit),
            )
            for i in range(2)
        ]
        with server.client() as api:
            _until(lambda: sum(w["status"] == "ONLINE" for w in api.list_workers("p")) == 2)
            started = time.monotonic()
            run_ids = [api.create_flow_run_from_deployment("ticking/d")["id"] for _ in range(runs)]
            _until(lambda: len(api.list_flow_runs(state="RUNNING", limit=1000)) >= limit)
        time.sleep(ticks / 2)
        in_flight = _counts(server, run_ids)
        say(f"kill -9 of the server, restarted at once; runs: {in_flight}")
        server.process.kill()
        server.process.wait()
        restart(server)
        with server.client() as api:
            _until(lambda: len(api.list_flow_runs(state="COMPLETED", limit=1000)) >= runs // 3)
        in_flight_2 = _counts(server, run_ids)
        say(f"kill -9 of the server, restarted after {outage:g} s; runs: {in_flight_2}")
        server.process.kill()
        server.process.wait()
        time.sleep(outage)
        restart(server)
        with server.client() as api:
            _until(
                lambda: all(state_of(api.read_flow_run(i)) in TERMINAL for i in run_ids),
                timeout=3600,
            )
            done = [api.read_flow_run(i) for i in run_ids]
            took = time.monotonic() - started
            logs = {
                i: [
                    x["message"]
                    for x in api.read_logs(i, limit=10_000)["items"]
                    if x["source"] == "stdout"
                ]
                for i in run_ids
            }
        executions = Counter(p.name.split(".")[0] for p in (server.root / "markers").iterdir())
        expected = [f"tick {i}" for i in range(ticks)] + ["done"]
        return {
            "runs": runs,
            "took": took,
            "in_flight_at_kill": in_flight,
            "in_flight_at_outage": in_flight_2,
            "states": dict(Counter(state_of(r) for r in done)),
            "executed_twice": sum(executions[i] > 1 for i in run_ids),
            "lost": sum(
                state_of(r) != "COMPLETED" or not r["has_notebook"] or executions[r["id"]] == 0
                for r in done
            ),
            "wrongly_crashed": sum(state_of(r) == "CRASHED" or r["attempt"] > 1 for r in done),
            "runs_with_log_lines_lost_or_doubled": sum(logs[i] != expected for i in run_ids),
            "worker_lines_about_the_outages": [
                w.output().count("lost the server") for w in workers
            ],
        }
    finally:
        for worker in workers:
            worker.stop()
        server.stop()


def _counts(server: Server, run_ids: list[str]) -> dict[str, int]:
    with server.client() as api:
        return dict(Counter(state_of(api.read_flow_run(i)) for i in run_ids))


def _until(check: Any, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up after {timeout:g} s")
        time.sleep(0.5)


def run(
    repeat: int | None = None,
    *,
    runs: int = 200,
    outage: float = 60.0,
    limit: int = 10,
    ticks: int = 15,
) -> list[Result]:
    with tempfile.TemporaryDirectory() as tmp:
        figures = scenario(Path(tmp), runs=runs, outage=outage, limit=limit, ticks=ticks)
    notes = (
        f"{figures['runs']} runs, 2 workers x {limit}, kill -9 + restart, then kill -9 + "
        f"{outage:g} s outage; in flight at the kills: {figures['in_flight_at_kill']}, "
        f"{figures['in_flight_at_outage']}; end states {figures['states']}; "
        f"worker lines about the outages {figures['worker_lines_about_the_outages']}; "
        f"all done in {figures['took']:.0f} s"
    )
    return [
        Result(
            name=f"outage: {name.replace('_', ' ')}",
            unit="runs",
            samples=[figures[name]],
            target="0",
            notes=notes if name == "executed_twice" else "",
        )
        for name in (
            "executed_twice",
            "lost",
            "wrongly_crashed",
            "runs_with_log_lines_lost_or_doubled",
        )
    ]


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.outage", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--outage", type=float, default=60.0, help="seconds the server stays down")
    parser.add_argument("--limit", type=int, default=10, help="runs at once per worker")
    parser.add_argument("--ticks", type=int, default=15, help="seconds each run takes")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        figures = scenario(
            Path(tmp), runs=args.runs, outage=args.outage, limit=args.limit, ticks=args.ticks
        )
    for key, value in figures.items():
        print(f"{key}: {value}")


if __name__ == "__main__":
    main()
