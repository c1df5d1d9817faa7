"""nbflows.execution.engine and nbflows.execution.kernel_pool against real ipykernel kernels and real papermill."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest
from nbformat import NotebookNode

from nbflows.execution.engine import ENGINE_NAME, NBFlowsEngine, OutputLine, execute
from nbflows.execution.kernel_pool import KernelKey, KernelPool
from nbflows.protocol import EVENT_MIME_TYPE as EVENT_MIME

from .kernel_support import require_kernel

KERNEL = "python3"
DATA = Path(__file__).parent / "data"


def notebook(*sources: str, parameters: str | None = None) -> NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.metadata.kernelspec = {"name": KERNEL, "language": "python", "display_name": "Python 3"}
    cells = []
    if parameters is not None:
        cell = nbformat.v4.new_code_cell(parameters)
        cell.metadata.tags = ["parameters"]
        cells.append(cell)
    cells += [nbformat.v4.new_code_cell(src) for src in sources]
    nb.cells = cells
    return nb


def pid_gone(pid: int) -> bool:
    """True when no process `pid` exists any more (a zombie counts as gone: it cannot run)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    try:
        return stat.read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (FileNotFoundError, IndexError):
        return True


class Recorder:
    def __init__(self) -> None:
        self.lines: list[OutputLine] = []
        self.cells: list[tuple[int, str]] = []

    def on_output(self, line: OutputLine) -> None:
        self.lines.append(line)

    def on_cell(self, index: int, event: str) -> None:
        self.cells.append((index, event))

    def triples(self) -> list[tuple[str, str, int]]:
        return [(line.stream, line.text, line.cell_index) for line in self.lines]


@pytest.fixture(scope="module")
def pool() -> Iterator[KernelPool]:
    with KernelPool() as p:
        yield p


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One working directory for most tests, so that they run on the pool's warm kernels."""
    return tmp_path_factory.mktemp("runs")


def run(nb: NotebookNode, cwd: Path, pool: KernelPool | None, rec: Recorder, **kw: object):
    args: dict[str, object] = {
        "parameters": {},
        "kernel_name": None,
        "env": {},
        "timeout": None,
        "cancel_event": None,
    }
    args.update(kw)
    return execute(
        nb,
        cwd=str(cwd),
        kernel_pool=pool,
        on_output=rec.on_output,
        on_cell=rec.on_cell,
        **args,  # type: ignore[arg-type]
    )


def test_completed_run_injects_parameters_and_streams_output_in_order(
    tmp_path: Path, pool: KernelPool
) -> None:
    nb = notebook(
        # The cell waits for a file the output callback creates when it sees "ready": this
        # only finishes if output reaches on_output while the cell is still running.
        "import os, time\n"
        "print(f'a={a} name={name}', flush=True)\n"
        "print('ready', flush=True)\n"
        "for _ in range(1000):\n"
        "    if os.path.exists('go'):\n"
        "        break\n"
        "    time.sleep(0.01)\n"
        "print('go' if os.path.exists('go') else 'no go')",
        "import sys\nprint('to stderr', file=sys.stderr)",
        "print('par', end='', flush=True); print('tial')\nprint('l1\\nl2')",
        "a * 10",
        parameters="a = 1\nname = 'default'",
    )
    rec = Recorder()

    def on_output(line: OutputLine) -> None:
        rec.on_output(line)
        if line.text == "ready":
            (tmp_path / "go").write_text("")

    result = execute(
        nb,
        parameters={"a": 5, "name": "given"},
        kernel_name=None,
        cwd=str(tmp_path),
        env={},
        timeout=None,
        on_output=on_output,
        on_cell=rec.on_cell,
        kernel_pool=pool,
        cancel_event=None,
    )

    assert result.status == "completed", result.message
    assert result.error is None
    executed = result.notebook
    # papermill's parameter injection: a tagged cell right after the "parameters" cell.
    assert executed.cells[1].metadata.tags == ["injected-parameters"]
    assert "a = 5" in executed.cells[1].source
    assert executed.metadata.papermill.parameters == {"a": 5, "name": "given"}
    assert len(nb.cells) == 5 and "injected-parameters" not in str(nb)  # input untouched
    assert rec.triples() == [
        ("stdout", "a=5 name=given", 2),
        ("stdout", "ready", 2),
        ("stdout", "go", 2),
        ("stderr", "to stderr", 3),
        ("stdout", "partial", 4),
        ("stdout", "l1", 4),
        ("stdout", "l2", 4),
        ("display", "50", 5),
    ]
    assert all(line.time.tzinfo is not None for line in rec.lines)
    assert rec.cells == [(i, e) for i in range(6) for e in ("start", "end")]
    # The executed notebook carries the outputs and papermill's per-cell metadata.
    assert executed.cells[5].outputs[0].data["text/plain"] == "50"
    assert all(c.metadata.papermill.status == "completed" for c in executed.cells)
    assert executed.metadata.language_info.name == "python"


def test_raising_cell_fails_with_cell_details_and_marks_the_notebook(
    workdir: Path, pool: KernelPool
) -> None:
    nb = notebook("x = 1", "print('before')\nraise ValueError('boom')", "print('never')")
    rec = Recorder()

    result = run(nb, workdir, pool, rec)

    assert result.status == "failed"
    error = result.error
    assert error is not None
    assert (error["cell_index"], error["exec_count"]) == (1, 2)
    assert (error["ename"], error["evalue"]) == ("ValueError", "boom")
    assert any("ValueError: boom" in t for t in error["traceback"])
    assert not any("\x1b" in t for t in error["traceback"])
    assert "ValueError: boom" in result.message
    # The failing cell (found by id: papermill inserts marker cells) holds the error output.
    failing = next(c for c in result.notebook.cells if c.get("id") == error["cell_id"])
    assert "raise ValueError" in failing.source
    assert [o.output_type for o in failing.outputs] == ["stream", "error"]
    assert failing.metadata.papermill.exception is True
    markers = [c for c in result.notebook.cells if "papermill-error-cell-tag" in c.metadata.tags]
    assert len(markers) == 2
    assert result.notebook.cells[-1].execution_count is None  # the next cell did not run
    assert ("stdout", "before", 1) in rec.triples()
    assert any(s == "error" and "ValueError: boom" in t for s, t, _ in rec.triples())
    assert "never" not in [line.text for line in rec.lines]


def test_kernel_death_is_a_crash(workdir: Path, pool: KernelPool) -> None:
    nb = notebook("print('alive', flush=True)", "import os\nos._exit(3)", "print('after')")
    rec = Recorder()

    result = run(nb, workdir, pool, rec)

    assert result.status == "crashed"
    assert "kernel died" in result.message and "exit code 3" in result.message
    assert result.error is not None and result.error["cell_index"] == 1
    assert result.error["ename"] == "DeadKernelError"
    assert ("stdout", "alive", 0) in rec.triples()
    assert "after" not in [line.text for line in rec.lines]
    crashed = next(c for c in result.notebook.cells if c.get("id") == result.error["cell_id"])
    assert "os._exit" in crashed.source
    assert crashed.outputs[-1].ename == "DeadKernelError"


def test_cancel_interrupts_and_kills_the_kernel(workdir: Path, pool: KernelPool) -> None:
    nb = notebook(
        "import os, subprocess, time\n"
        "child = subprocess.Popen(['sleep', '30'])\n"
        "print(os.getpid(), child.pid, flush=True)\n"
        "time.sleep(30)\n"
        "print('woke up')",
        "print('next cell')",
    )
    cancel = threading.Event()
    rec = Recorder()
    pids: list[int] = []

    def on_output(line: OutputLine) -> None:
        rec.on_output(line)
        if not pids and line.stream == "stdout":
            pids.extend(int(p) for p in line.text.split())
            cancel.set()

    result = execute(
        nb,
        parameters={},
        kernel_name=None,
        cwd=str(workdir),
        env={},
        timeout=None,
        on_output=on_output,
        kernel_pool=pool,
        cancel_event=cancel,
    )

    assert result.status == "cancelled"
    assert "Cancelled while running cell 0" in result.message
    kernel_pid, child_pid = pids
    assert pid_gone(kernel_pid), "the kernel process outlived the cancellation"
    assert pid_gone(child_pid), "a process started by the kernel outlived the cancellation"
    texts = [line.text for line in rec.lines]
    assert "woke up" not in texts and "next cell" not in texts
    assert result.notebook.cells[-1].execution_count is None


def test_timeout_fails_naming_the_timeout(workdir: Path, pool: KernelPool) -> None:
    nb = notebook("print('start', flush=True)", "import time\ntime.sleep(30)\nprint('woke')")
    rec = Recorder()

    result = run(nb, workdir, pool, rec, timeout=1)

    assert result.status == "failed"
    assert "timeout of 1 s" in result.message
    assert result.error is not None
    assert (result.error["ename"], result.error["cell_index"]) == ("TimeoutError", 1)
    assert "woke" not in [line.text for line in rec.lines]


def test_cancel_before_start_runs_nothing(workdir: Path, pool: KernelPool) -> None:
    cancel = threading.Event()
    cancel.set()
    rec = Recorder()
    result = run(notebook("print('hi')"), workdir, pool, rec, cancel_event=cancel)
    assert result.status == "cancelled"
    assert rec.lines == []


def test_runs_from_one_pool_are_isolated(workdir: Path, pool: KernelPool) -> None:
    first, second = Recorder(), Recorder()
    r1 = run(notebook("import os\nsecret = 42\nprint(os.getpid())"), workdir, pool, first)
    r2 = run(
        notebook("import os\nprint('secret' in globals(), os.getpid())"), workdir, pool, second
    )

    assert (r1.status, r2.status) == ("completed", "completed")
    pid1 = int(first.lines[0].text)
    defined, pid2 = second.lines[0].text.split()
    assert defined == "False"
    assert int(pid2) != pid1


def test_concurrent_runs_share_the_pool_safely(workdir: Path, pool: KernelPool) -> None:
    recs = [Recorder() for _ in range(3)]
    results: list[object] = [None] * 3

    def work(i: int) -> None:
        nb = notebook(f"import os\nmine = {i}\nprint(mine, os.getpid())")
        results[i] = run(nb, workdir, pool, recs[i])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert [getattr(r, "status", None) for r in results] == ["completed"] * 3
    outputs = [rec.lines[0].text.split() for rec in recs]
    assert [int(mine) for mine, _ in outputs] == [0, 1, 2]
    assert len({pid for _, pid in outputs}) == 3


@pytest.mark.parametrize("use_pool", [True, False], ids=["pooled", "unpooled"])
def test_working_directory_and_environment(
    tmp_path: Path, pool: KernelPool, use_pool: bool
) -> None:
    (tmp_path / "data.txt").write_text("from the run directory\n")
    nb = notebook(
        "import os\n"
        "print(open('data.txt').read().strip())\n"
        "print(os.path.realpath(os.getcwd()))\n"
        "print(os.environ['NBFLOWS_TEST_JOB_VAR'])\n"
        "print(os.environ['NBFLOWS_TEST_RUN_ID'])\n"
        "import subprocess\n"
        "print(subprocess.run(['sh', '-c', 'echo $NBFLOWS_TEST_RUN_ID'],"
        " capture_output=True, text=True).stdout.strip())"
    )
    env = {"NBFLOWS_TEST_JOB_VAR": "job value"}
    for run_id in ("run-1", "run-2"):  # the second run takes the spare started for the first
        rec = Recorder()
        result = run(
            nb,
            tmp_path,
            pool if use_pool else None,
            rec,
            env=env,
            run_env={"NBFLOWS_TEST_RUN_ID": run_id},
        )
        assert result.status == "completed", result.message
        assert [line.text for line in rec.lines] == [
            "from the run directory",
            os.path.realpath(tmp_path),
            "job value",
            run_id,
            run_id,
        ]


def test_pool_keys_spares_on_kernel_cwd_and_env(tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    with KernelPool(max_spares=2) as pool:
        pool.prewarm(KERNEL, str(tmp_path), {"A": "1"})
        assert pool.wait_spare(KERNEL, str(tmp_path), {"A": "1"}, timeout=60)
        assert not pool.spare_ready(KERNEL, str(tmp_path), {"A": "2"})
        assert not pool.spare_ready(KERNEL, str(other), {"A": "1"})
        key = KernelKey.of(KERNEL, str(tmp_path), {"A": "1"})
        spare = pool._spares[key].result()
        spare_pid = spare.provisioner.pid  # type: ignore[union-attr]

        km = pool.acquire(KERNEL, str(tmp_path), {"A": "1"})
        assert km is spare  # the warm one, handed out once...
        assert pool._spares[key].result() is not spare  # ...and replaced
        replacement_pid = pool._spares[key].result().provisioner.pid  # type: ignore[union-attr]
        pool.release(km)
    assert pid_gone(spare_pid)
    assert pid_gone(replacement_pid), "shutdown() must kill the spares"


def test_event_outputs_go_to_on_event_not_to_output_lines(workdir: Path, pool: KernelPool) -> None:
    nb = notebook(
        "from IPython.display import display\n"
        "print('before')\n"
        f"display({{{EVENT_MIME!r}: {{'state': 'RUNNING'}}, 'text/plain': 'event'}}, raw=True)\n"
        "print('after')"
    )
    rec = Recorder()
    events: list[tuple[object, int]] = []

    result = run(nb, workdir, pool, rec, on_event=lambda data, index: events.append((data, index)))

    assert result.status == "completed", result.message
    assert events == [({"state": "RUNNING"}, 0)]
    assert rec.triples() == [("stdout", "before", 0), ("stdout", "after", 0)]


def test_a_spare_that_died_while_idle_is_replaced(tmp_path: Path) -> None:
    with KernelPool() as pool:
        pool.prewarm(KERNEL, str(tmp_path), {})
        assert pool.wait_spare(KERNEL, str(tmp_path), {}, timeout=60)
        spare = pool._spares[KernelKey.of(KERNEL, str(tmp_path), {})].result()
        os.kill(spare.provisioner.pid, signal.SIGKILL)  # type: ignore[union-attr]
        spare.provisioner.process.wait(timeout=30)  # type: ignore[union-attr]
        rec = Recorder()

        result = run(notebook("print('fine')"), tmp_path, pool, rec)

    assert result.status == "completed", result.message
    assert rec.triples() == [("stdout", "fine", 0)]


def test_pool_shutdown_kills_running_kernels_and_the_run_crashes(tmp_path: Path) -> None:
    pool = KernelPool()
    pids: list[int] = []
    started = threading.Event()

    def on_output(line: OutputLine) -> None:
        pids.append(int(line.text))
        started.set()

    results = []
    worker = threading.Thread(
        target=lambda: results.append(
            execute(
                notebook("import os, time\nprint(os.getpid(), flush=True)\ntime.sleep(30)"),
                parameters={},
                kernel_name=None,
                cwd=str(tmp_path),
                env={},
                timeout=None,
                on_output=on_output,
                kernel_pool=pool,
                cancel_event=None,
            )
        )
    )
    worker.start()
    assert started.wait(60)
    pool.shutdown()
    worker.join(60)

    assert [r.status for r in results] == ["crashed"]
    assert pid_gone(pids[0])


def test_a_partial_line_is_sent_on_while_the_cell_still_runs(
    tmp_path: Path, pool: KernelPool
) -> None:
    nb = notebook(
        "import os, time\n"
        "print('working...', end='', flush=True)\n"
        "for _ in range(1000):\n"
        "    if os.path.exists('go'):\n"
        "        break\n"
        "    time.sleep(0.01)\n"
        "print(' done' if os.path.exists('go') else ' no go')"
    )
    rec = Recorder()

    def on_output(line: OutputLine) -> None:
        rec.on_output(line)
        if line.text == "working...":
            (tmp_path / "go").write_text("")

    result = execute(
        nb,
        parameters={},
        kernel_name=None,
        cwd=str(tmp_path),
        env={},
        timeout=None,
        on_output=on_output,
        kernel_pool=pool,
        cancel_event=None,
    )

    assert result.status == "completed", result.message
    assert [line.text for line in rec.lines] == ["working...", " done"]
    assert "".join(o.text for o in result.notebook.cells[0].outputs) == "working... done\n"


def test_unknown_kernel_fails_with_the_installed_names(tmp_path: Path) -> None:
    result = run(notebook("1"), tmp_path, None, Recorder(), kernel_name="no-such-kernel")
    assert result.status == "failed"
    assert "no-such-kernel" in result.message and KERNEL in result.message


def test_engine_is_registered_with_papermill_and_runs_plain_papermill(tmp_path: Path) -> None:
    import papermill
    from papermill.engines import papermill_engines

    assert papermill_engines.get_engine(ENGINE_NAME) is NBFlowsEngine
    source = tmp_path / "in.ipynb"
    nbformat.write(notebook("print(x)", parameters="x = 0"), source)
    out = papermill.execute_notebook(
        str(source),
        str(tmp_path / "out.ipynb"),
        parameters={"x": 7},
        engine_name=ENGINE_NAME,
        progress_bar=False,
    )
    assert out.cells[2].outputs[0].text == "7\n"


def test_papermill_can_load_the_engine_from_its_entry_point(tmp_path: Path) -> None:
    # papermill imports entry points while papermill.engines is half-imported: the engine
    # module must not need the rest of papermill at import time.
    dist = tmp_path / "nbflows_probe-0.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: nbflows-probe\nVersion: 0.0\n")
    (dist / "entry_points.txt").write_text(
        "[papermill.engine]\nnbflows = nbflows.execution.engine:NBFlowsEngine\n"
    )
    code = (
        "import papermill\n"
        "from papermill.engines import papermill_engines\n"
        "print(papermill_engines.get_engine('nbflows').__name__)"
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "NBFlowsEngine"


def test_kernels_start_under_a_deep_runtime_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Unix socket paths cannot exceed ~107 bytes: a deep JUPYTER_RUNTIME_DIR must not stop kernels.
    deep = tmp_path / ("runtime-" + "d" * 100)
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(deep))
    rec = Recorder()
    result = run(notebook("print('deep ok')"), tmp_path, None, rec)
    assert result.status == "completed", result.message
    assert ("stdout", "deep ok", 0) in rec.triples()


# -- kernels of other languages -----------------------------------------------------------------

OTHER_LANGUAGES = [
    # (kernel, notebook, parameters, the line the notebook prints)
    pytest.param(
        "bash",
        "params_bash.ipynb",
        {"greeting": "it's me", "count": 5, "words": ["a b", "c"]},
        "greeting=it's me count=5 words=a b c run=run-7",
        id="bash",
    ),
    pytest.param(
        "ir",
        "params_r.ipynb",
        {"greeting": 'say "hi"', "count": 5, "values": [1, 2, 3.5]},
        'greeting=say "hi" count=5 total=6.5 run=run-7',
        id="R",
    ),
]


@pytest.mark.slow
@pytest.mark.parametrize(("kernel", "name", "parameters", "printed"), OTHER_LANGUAGES)
def test_notebooks_of_other_languages_get_parameters_and_the_run_environment(
    workdir: Path,
    pool: KernelPool,
    kernel: str,
    name: str,
    parameters: dict[str, object],
    printed: str,
) -> None:
    require_kernel(kernel)
    nb = nbformat.read(DATA / name, as_version=4)
    rec = Recorder()
    result = run(
        nb, workdir, pool, rec, parameters=parameters, run_env={"NBFLOWS_FLOW_RUN_ID": "run-7"}
    )
    assert result.status == "completed", result.message
    # papermill's translator for the language wrote the injected cell.
    assert result.notebook.cells[1].metadata.tags == ["injected-parameters"]
    assert [line.text for line in rec.lines] == [printed]
    # The run's own variables were given at launch: no spare kernel is kept for one run's env.
    assert not any(key.kernel_name == kernel for key in pool._spares)


def test_python_kernels_keep_their_warm_spare_with_a_run_environment(workdir: Path) -> None:
    nb = notebook("import os\nprint(os.environ['NBFLOWS_FLOW_RUN_ID'])")
    with KernelPool(max_spares=1) as own:
        for run_id in ("run-1", "run-2"):
            rec = Recorder()
            result = run(nb, workdir, own, rec, run_env={"NBFLOWS_FLOW_RUN_ID": run_id})
            assert result.status == "completed", result.message
            assert [line.text for line in rec.lines] == [run_id]
        assert own.spare_ready(KERNEL, str(workdir), {}) or own.wait_spare(
            KERNEL, str(workdir), {}, timeout=60
        )


def test_a_run_environment_os_environ_would_refuse_stops_the_run_before_any_cell(
    workdir: Path, pool: KernelPool
) -> None:
    # Its variables are sent without waiting for the kernel's reply: what os.environ would
    # refuse must be refused before, not leave the cells running without them.
    nb = notebook("print('ran')")
    for bad in ({"A=B": "1"}, {"NBFLOWS_FLOW_RUN_ID": "run\x00"}):
        rec = Recorder()
        result = run(nb, workdir, pool, rec, run_env=bad)
        assert result.status != "completed"
        assert "cannot set the run's environment variable" in result.message, result.message
        assert rec.lines == []


def test_the_kernel_name_python_is_python3(workdir: Path, pool: KernelPool) -> None:
    nb = notebook("print('ran')")
    nb.metadata.kernelspec = {"name": "python", "language": "python", "display_name": "Python"}
    rec = Recorder()
    result = run(nb, workdir, pool, rec)
    assert result.status == "completed", result.message
    assert [line.text for line in rec.lines] == ["ran"]
