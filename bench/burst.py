"""(1b) Bursts and per-run environments on the default process pool (forked kernels).

* A burst of 100 trivial runs requested at once on the embedded worker (limit 4): wall time
  from the first request to the last COMPLETED, per run. Reference, run here: the papermill CLI
  on the same notebook, 2 processes at a time.
* A run whose `env` job variable differs from the spare kernel's, against a warm run of the
  same notebook measured alternately in the same server, each with a new value every run: an `env` set inside the warm kernel
  (ordinary variables), one that needs a kernel of its own forked with it (JUPYTER_*), and one that
  only a new process can apply (LD_*: started the usual way).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from tests.servers import NOTEBOOKS, start_server

from .harness import Result
from .memory import _part, _tree

TICK = os.sysconf("SC_CLK_TCK")


def _cpu(pid: int) -> tuple[float, float]:
    """(own CPU seconds, CPU seconds of its reaped children) of a process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
    return (utime + stime) / TICK, (cutime + cstime) / TICK


def _cpu_parts(server_pid: int) -> dict[str, float]:
    """CPU seconds used so far: server, worker, kernels and their templates."""
    parts = {"server": _cpu(server_pid)[0], "worker": 0.0, "kernels": 0.0}
    for pid in _tree(server_pid):
        try:
            own, reaped = _cpu(pid)
            name = _part(pid)
        except OSError:
            continue
        if name == "embedded worker":
            parts["worker"] += own
            # Its children are kernel templates (and kernels started the usual way): those
            # that ended, with the kernels they forked, are counted here.
            parts["kernels"] += reaped
        elif name == "kernel template":
            parts["kernels"] += own + reaped
    return parts


def _forks_per_template() -> str:
    from nbflows.execution.kernel_pool import forks_per_template_setting

    count = forks_per_template_setting()
    return str(count) if count else "any number"


NOTEBOOK = NOTEBOOKS / "trivial.ipynb"
TERMINAL = ["COMPLETED", "FAILED", "CRASHED", "CANCELLED"]


def _papermill(tmp: Path, i: int) -> None:
    papermill = Path(sys.executable).with_name("papermill")
    subprocess.run(
        [str(papermill), str(NOTEBOOK), str(tmp / f"out{i}.ipynb"), "-k", "python3"],
        check=True,
        capture_output=True,
    )


def _papermill_parallel(tmp: Path, runs: int) -> float:
    begin = time.perf_counter()
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda i: _papermill(tmp, i), range(runs)))
    return (time.perf_counter() - begin) / runs


def _burst(client: Any, count: int) -> float:
    begin = time.perf_counter()
    ids = {
        client.create_flow_run_from_deployment("trivial/burst", parameters={"x": i})["id"]
        for i in range(count)
    }
    deadline = time.monotonic() + 600
    while True:
        # Runs are listed newest created first, so the `count`-th newest ended run is this
        # burst's first one exactly when all of the burst ended: one run per answer keeps the
        # watching out of the measure (a page of 100 runs ten times a second was the largest
        # share of the server's CPU in a burst).
        last = client.list_flow_runs(
            state=TERMINAL, limit=1, offset=count - 1, work_pool_name="bench-pool"
        )
        if last and last[0]["id"] in ids:
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"the runs of a burst of {count} did not all finish in 600 s")
        time.sleep(0.1)
    elapsed = time.perf_counter() - begin
    done = client.list_flow_runs(state=TERMINAL, limit=count, work_pool_name="bench-pool")
    finished = {r["id"]: r for r in done if r["id"] in ids}
    assert len(finished) == count, f"{len(finished)} of {count}"
    bad = [r["state"] for r in finished.values() if r["state"]["type"] != "COMPLETED"]
    assert not bad, bad[:3]
    return elapsed / count


def _one(client: Any, ref: str, i: int, env: dict[str, str] | None) -> float:
    begin = time.perf_counter()
    created = client.create_flow_run_from_deployment(
        ref, parameters={"x": i}, job_variables={"env": env} if env else None
    )
    final = client.watch_flow_run(created["id"], timeout=120)
    elapsed = time.perf_counter() - begin
    assert final["state"]["type"] == "COMPLETED", final["state"]
    return elapsed


def run(repeat: int | None = None) -> list[Result]:
    repeat = repeat or 3
    bursts: list[float] = []
    warm: list[float] = []
    own_env: list[float] = []
    fork_env: list[float] = []
    start_env: list[float] = []
    reference: list[float] = []
    cpu: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        server = start_server(tmp / "srv")
        try:
            client = server.client()
            client.create_work_pool("bench-pool", "process")
            client.deploy(path="trivial.ipynb", name="burst", work_pool_name="bench-pool")
            _burst(client, 10)  # warm-up: the template, the spares
            time.sleep(1)
            before = _cpu_parts(server.process.pid)
            for _ in range(repeat):
                bursts.append(_burst(client, 100))
                time.sleep(1)
            after = _cpu_parts(server.process.pid)
            cpu = {k: (after[k] - before[k]) / (100 * repeat) * 1000 for k in before}
            for i in range(max(8, repeat * 4) + 2):
                # A new value on every run: no spare kernel can match these environments.
                for env, out in (
                    (None, warm),
                    ({"BENCH_TOKEN": str(i)}, own_env),
                    ({"JUPYTER_BENCH": str(i)}, fork_env),
                    ({"LD_BENCH": str(i)}, start_env),
                ):
                    elapsed = _one(client, "trivial/burst", i, env)
                    if i >= 2:
                        out.append(elapsed)
                    time.sleep(0.3)  # the worker replaces its spare: idle again
        finally:
            server.stop()
        shutil.copy(NOTEBOOK, tmp / "trivial.ipynb")
        for _ in range(max(1, min(repeat, 2))):
            reference.append(_papermill_parallel(tmp, 6))
    return [
        Result(
            name="burst of 100 trivial runs, wall time per run (process pool, limit 4)",
            unit="s",
            samples=bursts,
            target="≤ 50 ms (≥ 30x the reference)",
            reference="papermill CLI, 2 at a time",
            reference_samples=reference,
            notes="issue 18 before forked kernels: 0.249 s per run for a burst of 50; CPU time "
            "per run: "
            + ", ".join(f"{k} {v:.0f} ms" for k, v in cpu.items())
            + f" (kernels forked {_forks_per_template()} per template)",
        ),
        Result(
            name="run with its own env job variable (set in the warm kernel)",
            unit="s",
            samples=own_env,
            target="≤ 1.5x a warm run",
            reference="warm run, same notebook, alternated",
            reference_samples=warm,
        ),
        Result(
            name="run with its own env applied at kernel start (JUPYTER_*: a kernel forked for it)",
            unit="s",
            samples=fork_env,
            target="≤ 1.5x a warm run",
            reference="warm run, same notebook, alternated",
            reference_samples=warm,
            notes="issue 18 before forked kernels: about 2.4x a warm run",
        ),
        Result(
            name="run with its own env read by the loader (LD_*: a kernel started the usual way)",
            unit="s",
            samples=start_env,
            target="— (no fork possible)",
            reference="warm run, same notebook, alternated",
            reference_samples=warm,
        ),
    ]
