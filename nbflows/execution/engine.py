"""Execute a deployment's frozen notebook with papermill in a real kernel, fast and observable.

`execute()` is what a worker calls for one flow run. It keeps papermill's behaviour (the
"injected-parameters" cell, `papermill` metadata, the error-marker cells and
`PapermillExecutionError` on failure) but runs through the `nbflows` papermill engine, which

* takes a pre-started kernel from a `KernelPool` instead of starting one per run,
* hands every output line to `on_output` as the kernel sends it,
* stops the run on cancellation, on timeout, or when the kernel dies, and kills the kernel.

It does none of papermill's per-run file work: the notebook stays in memory, is not re-validated
or serialised, and the process working directory is never changed (runs share the process).
"""

from __future__ import annotations

import asyncio
import copy
import logging
import re
import signal
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Literal, TypedDict

import nbformat
from nbclient.exceptions import CellExecutionError, DeadKernelError
from nbclient.util import ensure_async
from nbformat import NotebookNode

# Only papermill modules that exist while papermill.engines is still importing: papermill loads
# this module through its "papermill.engine" entry point from there. papermill.execute is
# imported where it is used.
from papermill.clientwrap import PapermillNotebookClient
from papermill.engines import NBClientEngine, NotebookExecutionManager, papermill_engines
from papermill.exceptions import PapermillExecutionError
from papermill.log import logger as papermill_logger
from papermill.parameterize import parameterize_notebook
from papermill.version import version as papermill_version

from nbflows.errors import InvalidInput
from nbflows.execution.kernel_fork import settable_in_kernel
from nbflows.execution.kernel_pool import AcquireCancelled, KernelPool, new_client, wait_until_ready
from nbflows.notebooks.loading import installed_kernelspec, resolve_kernel_name
from nbflows.protocol import EVENT_MIME_TYPE

if TYPE_CHECKING:
    from jupyter_client.manager import AsyncKernelManager

__all__ = [
    "ENGINE_NAME",
    "CellError",
    "ExecutionResult",
    "NBFlowsEngine",
    "OutputLine",
    "Status",
    "execute",
]

log = logging.getLogger(__name__)

#: Display data of this MIME type is a run event for the worker (`%%flow` in a headless kernel):
#: it goes to `on_event`, not to `on_output` (see `nbflows.workers.reporting`).

#: The papermill engine name (`papermill -e nbflows ...`, `engine_name="nbflows"`).
ENGINE_NAME = "nbflows"

Status = Literal["completed", "failed", "cancelled", "crashed"]
Stream = Literal["stdout", "stderr", "error", "display"]

#: After interrupting a cancelled or timed-out cell, how long the kernel may take to stop the
#: cell by itself (so the notebook shows where it was) before it is killed.
INTERRUPT_GRACE = 0.3
#: How often the run is checked for cancellation, timeout and a dead kernel.
WATCH_INTERVAL = 0.05
#: A partial output line (no newline yet) is sent on after this long rather than held back.
PARTIAL_LINE_AFTER = 1.0

_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]")
_NEWLINE = re.compile(r"\r\n|\r|\n")


def strip_ansi(text: str) -> str:
    """`text` without terminal colour and cursor escape sequences."""
    return _ANSI.sub("", text)


@dataclass(frozen=True, slots=True)
class OutputLine:
    """One line of output from the run's kernel.

    `cell_index` indexes the notebook as executed (after the injected-parameters cell was added).
    `stream` is "stdout"/"stderr" for printed text, "error" for a traceback line (ANSI
    stripped), "display" for the text/plain form of a displayed value or a cell's result.
    """

    time: datetime
    stream: Stream
    text: str
    cell_index: int


class CellError(TypedDict):
    """Where and how a run failed.

    `cell_index` indexes the notebook as executed, before papermill inserted its two
    error-marker cells; `cell_id` identifies the cell in `ExecutionResult.notebook` too.
    `cell_index`/`cell_id`/`exec_count` are None when no cell was running.
    """

    cell_index: int | None
    cell_id: str | None
    exec_count: int | None
    ename: str
    evalue: str
    traceback: list[str]


@dataclass
class ExecutionResult:
    """The outcome of `execute()`.

    `notebook` is the executed notebook, also after a failure, a crash or a cancellation (then
    with papermill's error markers and an error output in the cell that was stopped).
    `message` says in one sentence what happened.
    """

    notebook: NotebookNode
    status: Status
    error: CellError | None = None
    message: str = ""


@dataclass(eq=False)
class _Run:
    """What the engine needs from `execute()`, and what it reports back."""

    km: AsyncKernelManager
    pool: KernelPool
    on_output: Callable[[OutputLine], None]
    on_cell: Callable[[int, str], None] | None
    cancel_event: threading.Event | None
    timeout: float | None
    run_env: Mapping[str, str]
    on_event: Callable[[Any, int], None] | None = None
    nb: NotebookNode | None = None
    current_cell: int | None = None
    #: None while running normally; "cancelled", "timeout" or "crashed" once stopped.
    stop_reason: str | None = None
    stop_cell: int | None = None
    exit_code: int | None = None
    callback_failures: int = field(default=0)

    def stop(self, reason: str) -> None:
        if self.stop_reason is None:
            self.stop_reason = reason
            self.stop_cell = self.current_cell

    def emit(self, line: OutputLine) -> None:
        try:
            self.on_output(line)
        except Exception:
            # A failing log relay must not fail the user's run; say so once.
            self.callback_failures += 1
            if self.callback_failures == 1:
                log.exception("on_output callback failed (further failures are not logged)")

    def run_event(self, data: Any, cell_index: int) -> None:
        if self.on_event is None:
            return
        try:
            self.on_event(data, cell_index)
        except Exception:
            log.exception("on_event callback failed")

    def cell_event(self, index: int, event: str) -> None:
        if self.on_cell is None:
            return
        try:
            self.on_cell(index, event)
        except Exception:
            log.exception("on_cell callback failed")


class NBFlowsNotebookClient(PapermillNotebookClient):
    """papermill's notebook client, running on a kernel it is given and reporting as it goes.

    Cell execution, papermill's per-cell bookkeeping and nbclient's output handling are the
    inherited ones; this class adds streaming of output lines, `on_cell` events, a watchdog
    (cancel, timeout, dead kernel) and runs the whole notebook in one event loop.
    """

    kc: Any  # an AsyncKernelClient once started (nbclient's own annotation is the sync one)

    def __init__(self, nb_man: NotebookExecutionManager, run: _Run, **kw: Any) -> None:
        super().__init__(nb_man, km=run.km, **kw)
        self._run = run
        # stream name -> (text not yet ended by a newline, when it started, cell index)
        self._partial: dict[Stream, tuple[str, float, int]] = {}
        self._kernel_info: dict[str, Any] | None = None

    # -- running --------------------------------------------------------------------------------

    def execute(self, **kwargs: Any) -> NotebookNode:
        """Run all cells; blocks the calling thread (which must not be running an event loop)."""
        loop = asyncio.new_event_loop()
        try:
            return loop.run_until_complete(self._supervise())
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _supervise(self) -> NotebookNode:
        run = self._run
        self.reset_execution_trackers()
        main = asyncio.ensure_future(self._execute_cells())
        watcher = asyncio.ensure_future(self._watch(main))
        await asyncio.wait([main])
        watcher.cancel()
        # nbclient leaves helper tasks behind when a cell is abandoned; end them on this loop.
        current = asyncio.current_task()
        leftovers = [t for t in asyncio.all_tasks() if t is not current and not t.done()]
        for task in leftovers:
            task.cancel()
        await asyncio.gather(*leftovers, return_exceptions=True)

        failure = None if main.cancelled() else main.exception()
        if (
            run.stop_reason is None
            and failure is not None
            and (isinstance(failure, DeadKernelError) or not await _alive(run.km))
        ):
            run.stop("crashed")
        if run.stop_reason is not None:
            if run.stop_reason == "crashed":
                run.exit_code = await _exit_code(run.km)
            # The caller is told the run is over only once the kernel process group is gone.
            await run.pool.async_kill(run.km)
        if self.kc is not None:
            self.kc.stop_channels()
            self.kc = None
        self._flush_partial()
        if run.stop_reason is not None:
            self._mark_stopped_cell()
        elif failure is not None:
            raise failure
        return self.nb

    async def _execute_cells(self) -> None:
        """papermill's `papermill_execute_cells`, as one coroutine."""
        run = self._run
        await self.async_start_new_kernel_client()
        assert self.kc is not None
        if run.run_env:
            await self._send_run_env(run.run_env)
        for index, cell in enumerate(self.nb.cells):
            if run.stop_reason is not None:
                break
            run.current_cell = index
            runs_code = (
                cell.cell_type == "code"
                and bool(cell.source.strip())
                and self.skip_cells_with_tag not in cell.metadata.get("tags", [])
            )
            if runs_code:
                run.cell_event(index, "start")
            try:
                self.nb_man.cell_start(cell, index)
                await self.async_execute_cell(cell, index)
            except CellExecutionError as ex:
                self.nb_man.cell_exception(self.nb.cells[index], cell_index=index, exception=ex)
                break
            finally:
                self._flush_partial()
                self.nb_man.cell_complete(self.nb.cells[index], cell_index=index)
                if runs_code:
                    run.cell_event(index, "end")
        run.current_cell = None
        # The kernel's language_info, from the kernel_info reply it gave when the client
        # connected (it does not change while a kernel runs): no round trip after the cells.
        info_msg = self._kernel_info
        if info_msg is not None and "language_info" in info_msg["content"]:
            self.nb.metadata["language_info"] = info_msg["content"]["language_info"]
        self.set_widgets_metadata()

    async def async_start_new_kernel_client(self) -> Any:
        """nbclient's, without the heartbeat thread: the watchdog polls the process instead."""
        assert self.km is not None
        kc = new_client(self.km)
        try:
            self._kernel_info = await wait_until_ready(kc, self.km, self.startup_timeout)
        except Exception:
            kc.stop_channels()
            raise
        kc.allow_stdin = False
        self.kc = kc
        return kc

    async def _send_run_env(self, run_env: Mapping[str, str]) -> None:
        # Per-run variables go into the warm kernel's os.environ (inherited by its subprocesses)
        # with a silent request: nothing is echoed on IOPub, nothing enters the history. Its
        # reply is not waited for (a round trip less per run): the kernel handles requests in
        # order, so the variables are set before the first cell runs, and what could make
        # os.environ refuse them is refused here first (a silent request's error would not
        # stop the cells queued after it).
        assert self.kc is not None
        for name, value in run_env.items():
            if not name or "=" in name or "\x00" in name or "\x00" in value:
                raise RuntimeError(
                    f"cannot set the run's environment variable {name!r}: a name must be "
                    "non-empty without '=' or NUL, a value without NUL"
                )
        code = f"__import__('os').environ.update({dict(run_env)!r})"
        await ensure_async(self.kc.execute(code, silent=True, store_history=False))

    async def _watch(self, main: asyncio.Future[None]) -> None:
        run = self._run
        deadline = time.monotonic() + run.timeout if run.timeout and run.timeout > 0 else None
        while not main.done():
            await asyncio.sleep(WATCH_INTERVAL)
            self._flush_partial(older_than=PARTIAL_LINE_AFTER)
            if run.cancel_event is not None and run.cancel_event.is_set():
                run.stop("cancelled")
            elif deadline is not None and time.monotonic() >= deadline:
                run.stop("timeout")
            elif not await _alive(run.km):
                run.stop("crashed")
                main.cancel()
                return
            else:
                continue
            # Cancelled or timed out: interrupt, give the cell a moment to stop (its traceback
            # then shows where it was), then kill the kernel and abandon the cell.
            try:
                await run.pool.async_interrupt(run.km)
            except Exception as exc:
                log.debug("interrupting the kernel failed: %s", exc)
            grace_end = time.monotonic() + INTERRUPT_GRACE
            while not main.done() and time.monotonic() < grace_end:
                await asyncio.sleep(0.02)
            if not main.done():
                await run.pool.async_kill(run.km)
                main.cancel()
            return

    def _mark_stopped_cell(self) -> None:
        """Record in the notebook why it stopped, on the cell that was running."""
        run = self._run
        index = run.stop_cell
        if index is None or index >= len(self.nb.cells):
            return
        cell = self.nb.cells[index]
        if cell.cell_type != "code":
            return
        ename, evalue = _stop_error(run)
        cell.outputs.append(
            nbformat.v4.new_output("error", ename=ename, evalue=evalue, traceback=[])
        )
        self.nb_man.cell_exception(cell, cell_index=index)

    # -- output streaming -----------------------------------------------------------------------

    def output(
        self,
        outs: list[NotebookNode],
        msg: dict[str, Any],
        display_id: str | None,
        cell_index: int,
    ) -> NotebookNode | None:
        """nbclient's hook for every output message; also hands it to `on_output` at once."""
        try:
            self._stream_message(msg, cell_index)
        except Exception:
            log.exception("could not relay an output message")
        return super().output(outs, msg, display_id, cell_index)

    def _stream_message(self, msg: dict[str, Any], cell_index: int) -> None:
        msg_type = msg["msg_type"]
        content = msg["content"]
        if msg_type == "stream":
            name = content.get("name")
            self._feed(
                "stderr" if name == "stderr" else "stdout", content.get("text", ""), cell_index
            )
            return
        if msg_type == "error":
            self._flush_partial()
            text = strip_ansi("\n".join(content.get("traceback") or []))
            lines = text.splitlines() or [f"{content.get('ename')}: {content.get('evalue')}"]
            self._emit_lines("error", lines, cell_index)
        elif msg_type in ("execute_result", "display_data"):
            if EVENT_MIME_TYPE in content.get("data", {}):
                self._flush_partial()  # lines printed before the event belong before it
                self._run.run_event(content["data"][EVENT_MIME_TYPE], cell_index)
                return
            text = content.get("data", {}).get("text/plain")
            if text is None:
                return
            self._flush_partial()
            if isinstance(text, list):
                text = "".join(text)
            self._emit_lines("display", text.splitlines() or [""], cell_index)

    def _feed(self, stream: Literal["stdout", "stderr"], text: str, cell_index: int) -> None:
        pending, since, _ = self._partial.pop(stream, ("", time.monotonic(), cell_index))
        buf = pending + text
        lines: list[str] = []
        start = 0
        for match in _NEWLINE.finditer(buf):
            sep = match.group()
            if sep == "\r" and match.end() == len(buf):
                break  # may be the first half of "\r\n"
            line = buf[start : match.start()]
            # A bare "\r" redraws a line (progress bars): the empty redraws are not lines.
            if line or sep != "\r":
                lines.append(line)
            start = match.end()
        if lines:
            self._emit_lines(stream, lines, cell_index)
        rest = buf[start:]
        if rest:
            self._partial[stream] = (rest, since if not lines else time.monotonic(), cell_index)

    def _flush_partial(self, older_than: float | None = None) -> None:
        now = time.monotonic()
        for stream, (text, since, cell_index) in list(self._partial.items()):
            if older_than is not None and now - since < older_than:
                continue
            del self._partial[stream]
            text = text.rstrip("\r")
            if text:
                self._emit_lines(stream, [text], cell_index)

    def _emit_lines(self, stream: Stream, lines: list[str], cell_index: int) -> None:
        now = datetime.now(timezone.utc)
        for line in lines:
            self._run.emit(OutputLine(now, stream, line, cell_index))


class NBFlowsEngine(NBClientEngine):
    """papermill engine "nbflows".

    Given `nbflows_run` (from `execute()`), it runs on the pooled kernel with streaming and
    cancellation; without it (e.g. `papermill -e nbflows in.ipynb out.ipynb`) it behaves
    exactly like papermill's default nbclient engine.
    """

    @classmethod
    def execute_managed_notebook(
        cls,
        nb_man: NotebookExecutionManager,
        kernel_name: str,
        log_output: bool = False,
        stdout_file: Any = None,
        stderr_file: Any = None,
        start_timeout: float = 60,
        execution_timeout: float | None = None,
        **kwargs: Any,
    ) -> NotebookNode:
        run: _Run | None = kwargs.pop("nbflows_run", None)
        if run is None:
            return super().execute_managed_notebook(
                nb_man,
                kernel_name,
                log_output=log_output,
                stdout_file=stdout_file,
                stderr_file=stderr_file,
                start_timeout=start_timeout,
                execution_timeout=execution_timeout,
                **kwargs,
            )
        run.nb = nb_man.nb
        client = NBFlowsNotebookClient(
            nb_man,
            run,
            kernel_name=kernel_name,
            log=papermill_logger,
            startup_timeout=int(start_timeout),
            log_output=log_output,
            stdout_file=stdout_file,
            stderr_file=stderr_file,
        )
        return client.execute()


papermill_engines.register(ENGINE_NAME, NBFlowsEngine)


def execute(
    notebook: NotebookNode,
    *,
    parameters: Mapping[str, Any],
    kernel_name: str | None,
    cwd: str,
    env: Mapping[str, str],
    timeout: float | None,
    on_output: Callable[[OutputLine], None],
    on_cell: Callable[[int, str], None] | None = None,
    kernel_pool: KernelPool | None,
    cancel_event: threading.Event | None,
    run_env: Mapping[str, str] | None = None,
    on_event: Callable[[Any, int], None] | None = None,
) -> ExecutionResult:
    """Execute `notebook` (not modified) with papermill in a fresh kernel; block until done.

    * `parameters` are injected papermill-style, with papermill's translator for the kernel's
      language (an "injected-parameters" cell after the cell tagged "parameters"); parameters not
      given keep the notebook's code. `kernel_name` overrides the notebook's kernelspec
      (`python` is `python3`, as in Jupyter).
    * The kernel runs in `cwd` with `env` added to this process's environment. With a
      `kernel_pool` a warm kernel for (kernel_name, cwd, env) is used; without one a kernel is
      started for this run. Either way the kernel is killed when the run ends.
    * `run_env`: variables that differ on every run (e.g. the flow run id). A Python kernel gets
      them in its `os.environ` before the first cell rather than at launch, so they do not defeat
      the warm-kernel match on `env`; a kernel of another language is started with them. So
      does `env` for a Python kernel unless it holds a variable read only at process start
      (see `nbflows.execution.kernel_fork.settable_in_kernel`).
    * `timeout` (seconds) limits the execution of the cells, kernel start-up not included.
    * `on_output` receives each output line as the kernel sends it; `on_cell(index, event)` is
      called with "start" and "end" around each code cell. Both run on the calling thread and
      should return quickly; their exceptions are logged, not raised.
    * `on_event(data, cell_index)` receives the JSON of each `EVENT_MIME_TYPE` display output (run
      events of `%%flow` cells), on the same terms; those outputs are not output lines.
    * Setting `cancel_event` interrupts the running cell, then kills the kernel (within a second).

    Never raises for what happens in the notebook or the kernel: the result's `status` is
    "completed", "failed" (a cell raised, or the run timed out, or it could not start),
    "cancelled", or "crashed" (the kernel died or could not be started). Must be called from a
    thread without a running event loop (a worker thread).
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        raise RuntimeError(
            "execute() blocks until the run ends; call it in a worker thread "
            "(e.g. loop.run_in_executor), not on a running event loop"
        )

    name = kernel_name or notebook.get("metadata", {}).get("kernelspec", {}).get("name")
    if not name:
        return ExecutionResult(
            notebook,
            "failed",
            message="The notebook has no kernelspec and no kernel_name was given; "
            "set the notebook's kernel (e.g. python3) and deploy again.",
        )
    name = resolve_kernel_name(name)
    try:
        language = installed_kernelspec(name)["language"]
    except InvalidInput as exc:
        return ExecutionResult(notebook, "failed", message=exc.message)
    except Exception as exc:
        return ExecutionResult(
            notebook, "failed", message=f"Cannot read the kernelspec {name!r}: {exc}"
        )
    try:
        nb = _prepare(notebook, dict(parameters), name, language)
    except Exception as exc:
        return ExecutionResult(
            notebook, "failed", message=f"Could not prepare the notebook for papermill: {exc}"
        )
    if cancel_event is not None and cancel_event.is_set():
        return ExecutionResult(nb, "cancelled", message="Cancelled before the notebook started.")

    pool = kernel_pool if kernel_pool is not None else KernelPool(max_spares=0, fork=False)
    # A warm Python kernel takes the run's own variables in its os.environ; other languages have
    # no one way to set them, so their kernel starts with them (and is never a warm spare).
    python = language.lower() == "python"
    if python and env and all(settable_in_kernel(name) for name in env):
        # The same for the job's `env`, when none of it is read only at start-up (LD_*, TZ,
        # PYTHON*, ...): the run then takes the warm spare of the pool's plain key.
        run_env = {**env, **(run_env or {})}
        env = {}
    try:
        return _execute_on_pool(
            nb,
            pool,
            name,
            cwd,
            env,
            timeout,
            on_output,
            on_cell,
            cancel_event,
            run_env or {},
            on_event,
            set_in_kernel=python,
        )
    finally:
        if kernel_pool is None:
            pool.shutdown()


def _execute_on_pool(
    nb: NotebookNode,
    pool: KernelPool,
    kernel_name: str,
    cwd: str,
    env: Mapping[str, str],
    timeout: float | None,
    on_output: Callable[[OutputLine], None],
    on_cell: Callable[[int, str], None] | None,
    cancel_event: threading.Event | None,
    run_env: Mapping[str, str],
    on_event: Callable[[Any, int], None] | None = None,
    *,
    set_in_kernel: bool = True,
) -> ExecutionResult:
    launch_env = None if set_in_kernel else run_env
    try:
        km = pool.acquire(
            kernel_name, cwd, env, cancel_event=cancel_event, launch_env=launch_env or None
        )
    except AcquireCancelled:
        return ExecutionResult(nb, "cancelled", message="Cancelled before the notebook started.")
    except FileNotFoundError as exc:
        return ExecutionResult(
            nb, "failed", message=f"Cannot start the kernel in {cwd!r}: {exc.strerror or exc}."
        )
    except Exception as exc:
        return ExecutionResult(nb, "crashed", message=f"The kernel could not be started: {exc}")

    in_kernel = run_env if set_in_kernel else {}
    run = _Run(km, pool, on_output, on_cell, cancel_event, timeout, in_kernel, on_event)
    unexpected: BaseException | None = None
    try:
        papermill_engines.execute_notebook_with_engine(
            ENGINE_NAME,
            nb,
            kernel_name=kernel_name,
            input_path=None,
            output_path=None,
            progress_bar=False,
            log_output=False,
            autosave_cell_every=0,
            start_timeout=pool.startup_timeout,
            nbflows_run=run,
        )
    except Exception as exc:
        unexpected = exc
        log.debug("notebook execution ended with %r", exc, exc_info=True)
    finally:
        # On every stop path the engine killed the kernel already; this covers the others.
        pool.release(km)
    executed = run.nb if run.nb is not None else nb

    if unexpected is not None and run.stop_reason is None:
        return ExecutionResult(
            executed, "crashed", message=f"Running the notebook failed: {unexpected}"
        )
    from papermill.execute import raise_for_execution_errors

    try:
        # papermill's own check: finds the failed cell and inserts its error-marker cells.
        raise_for_execution_errors(executed, None)
        cell_failure = None
    except PapermillExecutionError as exc:
        cell_failure = exc
    return _result(executed, run, cell_failure)


def _result(
    nb: NotebookNode, run: _Run, cell_failure: PapermillExecutionError | None
) -> ExecutionResult:
    reason = run.stop_reason
    if reason is None and cell_failure is None:
        return ExecutionResult(nb, "completed", message="Completed.")
    if reason is None:
        assert cell_failure is not None
        error = _cell_error(
            nb,
            cell_failure.cell_index,
            cell_failure.exec_count,
            cell_failure.ename,
            cell_failure.evalue,
            [strip_ansi(t) for t in cell_failure.traceback or []],
        )
        return ExecutionResult(
            nb,
            "failed",
            error,
            f"{cell_failure.ename}: {cell_failure.evalue} ({_where(error)}).",
        )
    ename, evalue = _stop_error(run)
    error = _cell_error(nb, run.stop_cell, None, ename, evalue, [])
    where = f"while running {_where(error)}" if run.stop_cell is not None else "between cells"
    if reason == "cancelled":
        return ExecutionResult(
            nb, "cancelled", None, f"Cancelled {where}; the kernel was interrupted and stopped."
        )
    if reason == "timeout":
        return ExecutionResult(
            nb,
            "failed",
            error,
            f"Timed out: the run exceeded its timeout of {run.timeout:g} s; stopped {where}.",
        )
    return ExecutionResult(nb, "crashed", error, f"The kernel died {where} ({_exit_text(run)}).")


def _cell_error(
    nb: NotebookNode,
    index: int | None,
    exec_count: int | None,
    ename: str,
    evalue: str,
    traceback: list[str],
) -> CellError:
    cell = _executed_cell(nb, index)
    if exec_count is None and cell is not None:
        exec_count = cell.get("execution_count")
    return CellError(
        cell_index=index,
        cell_id=cell.get("id") if cell is not None else None,
        exec_count=exec_count,
        ename=ename,
        evalue=evalue,
        traceback=traceback,
    )


def _executed_cell(nb: NotebookNode, index: int | None) -> NotebookNode | None:
    """The cell at `index` in the notebook as executed, i.e. skipping papermill's markers."""
    if index is None:
        return None
    from papermill.execute import ERROR_MARKER_TAG

    cells = [c for c in nb.cells if ERROR_MARKER_TAG not in c.get("metadata", {}).get("tags", [])]
    return cells[index] if 0 <= index < len(cells) else None


def _where(error: CellError) -> str:
    count = error["exec_count"]
    prompt = f", In [{count}]" if count is not None else ""
    return f"cell {error['cell_index']}{prompt}"


def _stop_error(run: _Run) -> tuple[str, str]:
    if run.stop_reason == "timeout":
        return "TimeoutError", f"The run exceeded its timeout of {run.timeout:g} s"
    if run.stop_reason == "cancelled":
        return "CancelledError", "The run was cancelled"
    return "DeadKernelError", f"The kernel died ({_exit_text(run)})"


def _exit_text(run: _Run) -> str:
    code = run.exit_code
    if code is None:
        return "exit status unknown"
    if code < 0:
        try:
            return f"killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


async def _alive(km: AsyncKernelManager) -> bool:
    try:
        return bool(await km.is_alive())
    except Exception:
        return False


async def _exit_code(km: AsyncKernelManager) -> int | None:
    try:
        if km.provisioner is not None and km.provisioner.has_process:
            return await km.provisioner.poll()
    except Exception:
        pass
    return None


def _prepare(
    notebook: NotebookNode, parameters: dict[str, Any], kernel_name: str, language: str
) -> NotebookNode:
    """papermill's `load_notebook_node` + parameterisation, in memory and without validation."""
    from papermill.execute import prepare_notebook_metadata, remove_error_markers

    nb = copy.deepcopy(notebook)
    if nb.get("nbformat") != 4:
        nb = nbformat.convert(nb, 4)
    nb = nbformat.v4.upgrade(nb) or nb
    if "papermill" not in nb.metadata:
        nb.metadata["papermill"] = nbformat.from_dict(
            {
                "default_parameters": {},
                "parameters": {},
                "environment_variables": {},
                "version": papermill_version,
            }
        )
    for cell in nb.cells:
        cell.metadata.setdefault("tags", [])
        cell.metadata.setdefault("papermill", nbformat.from_dict({}))
    if parameters:
        nb = parameterize_notebook(
            nb, parameters, kernel_name=kernel_name, language=language, engine_name=ENGINE_NAME
        )
    nb = prepare_notebook_metadata(nb, None, None)
    return remove_error_markers(nb)
