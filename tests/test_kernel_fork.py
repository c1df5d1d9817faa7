"""Forked kernels (nbflows.execution.kernel_fork): real template processes, real ipykernels, real runs
through a server. Each kernel must be a fresh process: nothing a run defines reaches the next."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from pathlib import Path
from typing import Any

import nbformat
import pytest

from nbflows.execution.kernel_fork import (
    ForkProvisioner,
    forkable,
    same_start_time_env,
    settable_in_kernel,
)
from nbflows.execution.kernel_pool import KernelPool, new_client

from .servers import Server
from .test_worker import create_run, deploy, gone, messages, state_of, wait_state
from .waiting import wait_for

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="forked kernels need os.fork")


def _run_code(km: Any, code: str) -> str:
    """Execute `code` in the kernel and return what it printed."""

    async def go() -> str:
        kc = new_client(km)
        out: list[str] = []
        try:
            await kc._async_execute_interactive(
                code,
                output_hook=lambda m: out.append(m["content"].get("text", "")),
                timeout=60,
            )
        finally:
            kc.stop_channels()
        return "".join(out)

    return asyncio.run(go())


def test_python_kernels_fork_from_a_template_in_their_own_cwd_and_env(tmp_path: Path) -> None:
    code = (
        "import os, json; from ipykernel.kernelapp import IPKernelApp; print(json.dumps(["
        "os.getcwd(), os.environ.get('A'), os.getpid(), os.getppid(), os.getpgid(0),"
        " IPKernelApp.instance().parent_handle]))"
    )
    with KernelPool(max_spares=0) as pool:
        seen = []
        for value in ("1", "2"):
            km = pool.acquire("python3", str(tmp_path), {"A": value})
            assert isinstance(km.provisioner, ForkProvisioner)
            cwd, a, pid, ppid, pgid, parent_handle = json.loads(_run_code(km, code))
            assert (cwd, a) == (str(tmp_path.resolve()), value)
            assert parent_handle == ppid  # watches its parent, as a launched kernel does
            assert pgid == pid  # its own process group: a kill of the group spares the template
            assert ppid != os.getpid()  # the template's child
            seen.append((pid, ppid))
            pool.release(km)
        # Fresh processes, forked from one template (by default it serves several kernels).
        assert seen[0][0] != seen[1][0] and seen[0][1] == seen[1][1]


def test_a_variable_set_in_one_forked_kernel_is_not_in_the_next(tmp_path: Path) -> None:
    with KernelPool(max_spares=1) as pool:
        km = pool.acquire("python3", str(tmp_path), {})
        _run_code(km, "import os; secret = 41; os.environ['LEAK'] = 'yes'")
        pool.release(km)
        km = pool.acquire("python3", str(tmp_path), {})
        printed = _run_code(km, "import os; print(globals().get('secret'), os.environ.get('LEAK'))")
        pool.release(km)
    assert printed.strip() == "None None"


SEED_CODE = "import random; print(hash('nbflows'), random.random())"


def test_with_one_fork_per_template_each_kernel_has_its_own_hash_seed(tmp_path: Path) -> None:
    # NBFLOWS_FORKS_PER_TEMPLATE=1: no two kernels share a template, so none share a hash seed.
    with KernelPool(max_spares=1, forks_per_template=1) as pool:
        seen = []
        for _ in range(3):
            km = pool.acquire("python3", str(tmp_path), {})
            assert isinstance(km.provisioner, ForkProvisioner)
            seen.append(_run_code(km, SEED_CODE).split())
            pool.release(km)
        # One template per kernel (each was used up and replaced); the used ones end.
        assert len({h for h, _ in seen}) == 3, seen
        assert len({r for _, r in seen}) == 3, seen
        wait_for(lambda: not [t for t in pool._retired if t.alive], "used templates to end", 60)


def test_a_template_forks_a_bounded_number_of_kernels_sharing_only_its_hash_seed(
    tmp_path: Path,
) -> None:
    # At most 2 kernels per template: the first two share its hash seed, the third has another.
    with KernelPool(max_spares=0, forks_per_template=2, template_max_age=0) as pool:
        seen = []
        for value in ("1", "2", "3"):
            km = pool.acquire("python3", str(tmp_path), {"A": value})
            seen.append(_run_code(km, SEED_CODE + "; import os; print(os.environ['A'])").split())
            pool.release(km)
        wait_for(lambda: not [t for t in pool._retired if t.alive], "the used template to end", 60)
    assert seen[0][0] == seen[1][0] != seen[2][0], seen
    assert len({r for _, r, _ in seen}) == 3, seen  # random reseeds itself after a fork
    assert [a for _, _, a in seen] == ["1", "2", "3"]


def test_a_template_past_its_age_is_replaced_once_its_successor_is_ready(tmp_path: Path) -> None:
    def seed() -> str:
        km = pool.acquire("python3", str(tmp_path), {})
        try:
            return _run_code(km, SEED_CODE).split()[0]
        finally:
            pool.release(km)

    with KernelPool(max_spares=0, forks_per_template=0, template_max_age=0.01) as pool:
        first = seed()
        # Past its age, the template keeps forking until its successor (started by now) is
        # ready: no run waits for a template's imports.
        seed()
        wait_for(
            lambda: [t for t in pool._next_templates.values() if t.ready.is_set()],
            "a successor template to be ready",
            120,
        )
        assert seed() != first


def test_kernels_of_one_template_share_its_hash_seed_but_not_random_state(
    tmp_path: Path,
) -> None:
    # NBFLOWS_FORKS_PER_TEMPLATE=0 and no age limit: one template forks every kernel.
    with KernelPool(max_spares=0, forks_per_template=0, template_max_age=0) as pool:
        seen = []
        for _ in range(2):
            km = pool.acquire("python3", str(tmp_path), {})
            seen.append(_run_code(km, SEED_CODE).split())
            pool.release(km)
        assert len(pool._templates) == 1 and not pool._next_templates
    assert seen[0][0] == seen[1][0]
    assert seen[0][1] != seen[1][1]  # random reseeds itself after a fork


def test_an_environment_gets_a_spare_kernel_once_it_is_asked_for_twice(tmp_path: Path) -> None:
    # A per-run JUPYTER_* value would otherwise start a spare that nobody takes, on every run.
    with KernelPool(max_spares=2) as pool:
        env = {"JUPYTER_NBFLOWS_TEST": "1"}
        km = pool.acquire("python3", str(tmp_path), env)
        assert not pool._spares
        assert _run_code(km, "import os; print(os.environ['JUPYTER_NBFLOWS_TEST'])").strip() == "1"
        pool.release(km)
        km = pool.acquire("python3", str(tmp_path), env)
        pool.release(km)
        assert pool.wait_spare("python3", str(tmp_path), env, timeout=60)
        km = pool.acquire("python3", str(tmp_path), {})  # the plain environment: at once
        pool.release(km)
        assert pool.wait_spare("python3", str(tmp_path), {}, timeout=60)


def test_a_killed_forked_kernel_reports_its_signal_and_its_template_keeps_forking(
    tmp_path: Path,
) -> None:
    with KernelPool(max_spares=0) as pool:
        km = pool.acquire("python3", str(tmp_path), {})
        pid = km.provisioner.pid
        os.kill(pid, signal.SIGKILL)
        code = wait_for(lambda: km.provisioner.process.poll(), "the exit status", timeout=30)
        assert code == -signal.SIGKILL
        pool.kill(km)
        km = pool.acquire("python3", str(tmp_path), {})
        assert _run_code(km, "print(6 * 7)").strip() == "42"
        pool.release(km)


def test_kernels_die_with_their_template(tmp_path: Path) -> None:
    with KernelPool(max_spares=0) as pool:
        km = pool.acquire("python3", str(tmp_path), {})
        pid = km.provisioner.pid
        (template,) = pool._templates.values()
        template.process.kill()
        wait_for(lambda: gone(pid), "the forked kernel to die with its template", timeout=30)
        assert wait_for(lambda: km.provisioner.process.poll(), "exit status", timeout=30)
        pool.kill(km)
        # The pool starts another template for the next kernel.
        km = pool.acquire("python3", str(tmp_path), {})
        assert _run_code(km, "print('again')").strip() == "again"
        pool.release(km)


def test_a_variable_read_at_process_start_gets_a_kernel_started_the_usual_way(
    tmp_path: Path,
) -> None:
    with KernelPool(max_spares=0) as pool:
        km = pool.acquire("python3", str(tmp_path), {"LD_NBFLOWS_TEST": "1"})
        assert km.provisioner.process.__class__.__name__ == "Popen"
        assert _run_code(km, "import os; print(os.environ['LD_NBFLOWS_TEST'])").strip() == "1"
        pool.release(km)


def test_which_kernels_and_variables_fork() -> None:
    assert (
        forkable(["/usr/bin/python3", "-m", "ipykernel_launcher", "-f", "x"]) == "/usr/bin/python3"
    )
    assert forkable(["bash", "-m", "bash_kernel", "-f", "x"]) is None
    assert forkable(["R", "--slave", "-e", "IRkernel::main()"]) is None
    assert same_start_time_env({"A": "1", "PYTHONPATH": "x"}, {"A": "2"})
    assert not same_start_time_env({"LD_LIBRARY_PATH": "/x"}, {})
    assert not same_start_time_env({"LANG": "C"}, {"LANG": "C.UTF-8"})
    assert settable_in_kernel("API_KEY") and settable_in_kernel("PATH")
    for name in ("TZ", "PYTHONPATH", "LD_PRELOAD", "JUPYTER_PATH", "LC_ALL"):
        assert not settable_in_kernel(name)


# -- through a server -------------------------------------------------------------------------

LEAK_CHECK = [
    ("parameters", "x = 0"),
    (
        "",
        "import os\n"
        "print('seen', globals().get('leaked', 'none'), os.environ.get('LEAKED_ENV', 'none'),"
        " os.environ.get('JOB_VAR', 'none'), os.environ.get('LD_NBFLOWS_TEST', 'none'))\n"
        "print('pid', os.getpid())\n"
        "import random\n"
        "print('seed', hash('nbflows'), random.random())",
    ),
    ("", "leaked = x\nos.environ['LEAKED_ENV'] = str(x)"),
]


def _leak_notebook(path: Path) -> None:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    for tag, source in LEAK_CHECK:
        cell = nbformat.v4.new_code_cell(source)
        if tag:
            cell.metadata["tags"] = [tag]
        nb.cells.append(cell)
    nbformat.write(nb, path)


@pytest.mark.slow
def test_runs_through_a_server_see_nothing_of_the_previous_run(server: Server) -> None:
    _leak_notebook(server.root / "leak.ipynb")
    with server.client() as api:
        api.create_work_pool("p", "process")
    deploy(server, "leak.ipynb", "plain", "p")
    deploy(server, "leak.ipynb", "env", "p", job_variables={"env": {"JOB_VAR": "j"}})
    deploy(server, "leak.ipynb", "ld", "p", job_variables={"env": {"LD_NBFLOWS_TEST": "l"}})
    expected = {
        "plain": "seen none none none none",
        "env": "seen none none j none",
        "ld": "seen none none none l",
    }
    pids: list[int] = []
    seeds: list[str] = []
    for x in range(1, 3):
        for name, seen in expected.items():
            run_id = create_run(server, f"leak/{name}", x=x)
            run = wait_state(server, run_id, {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"})
            assert state_of(run) == "COMPLETED", run["state"]
            lines = messages(server, run_id, "stdout")
            assert seen in lines, lines
            pids += [int(line.split()[1]) for line in lines if line.startswith("pid ")]
            seeds += [line for line in lines if line.startswith("seed ")]
    assert len(set(pids)) == len(pids) == 6  # a fresh process for every run
    # Each its own random state. (Forked kernels of one template share its str hash seed: at
    # most NBFLOWS_FORKS_PER_TEMPLATE of them, see test_a_template_forks_a_bounded_number...)
    randoms = [line.split()[2] for line in seeds]
    assert len(set(randoms)) == len(seeds) == 6, seeds
