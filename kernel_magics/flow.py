"""Flow objects: the code of a `%%flow` cell, run as a tracked flow run, deployable and servable.

Running a flow runs its code in the user namespace the way IPython runs a cell (IPython syntax
transformed, `ast_node_interactivity` and a trailing `;` honoured, tracebacks pointing at the
cell's own lines), inside one flow run: each attempt is reported (see `reporting`), what it
prints and logs becomes log lines (see `capture`), an exception fails the attempt and, once no
retry is left, propagates unchanged, so the cell shows it as it would show any error.
"""

from __future__ import annotations

import ast
import ctypes
import dataclasses
import inspect
import signal
import sys
import threading
import time
import traceback
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, nullcontext
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from functools import partial
from pathlib import Path
from types import CodeType
from typing import TYPE_CHECKING, Any, cast

from IPython.core.displayhook import DisplayHook
from IPython.core.error import UsageError

from nbflows.client.context import KernelContext, current_context
from nbflows.errors import InvalidInput
from nbflows.kernel_magics.capture import RunCapture
from nbflows.kernel_magics.executed import CodeAsRun, ExecutedCell, code_as_run, executed_cells
from nbflows.kernel_magics.reporting import ApiReporter, FlowRunRecord, Reporter, get_reporter
from nbflows.kernel_magics.status_line import RunStatusLine

if TYPE_CHECKING:
    import asyncio

    from IPython.core.interactiveshell import InteractiveShell

    from nbflows.client.rest import Client
    from nbflows.packaging.images import DeploymentImage
    from nbflows.scheduling.schedules import Schedule

__all__ = ["Flow", "FlowOptions", "FlowTimeout", "ServeHandle"]

_MISSING = object()
#: The run being executed on this thread (or asyncio task): the parent of a flow it calls.
_current_run: ContextVar[FlowRunRecord | None] = ContextVar("nbflows_current_run", default=None)


def current_run() -> FlowRunRecord | None:
    """The innermost `%%flow` run executing now on this thread, if any."""
    return _current_run.get()


class FlowTimeout(TimeoutError):
    """An attempt ran longer than the flow's `--timeout`."""

    #: The run whose limit expired: a flow called inside another may see its caller's timeout,
    #: which must fail the caller, not be retried by the callee.
    run_key: str | None = None


@dataclass(frozen=True)
class FlowOptions:
    """The options of `%%flow NAME [options]` (see the magic's help)."""

    retries: int = 0
    retry_delay: float = 0.0
    timeout: float | None = None
    tags: tuple[str, ...] = ()
    log_prints: bool = True
    description: str | None = None


@dataclass
class _Program:
    """A flow body compiled for one way of running it."""

    filename: str
    steps: list[CodeType] = field(default_factory=list)
    #: The last expression, evaluated for its value (calls, not cells: a cell displays it).
    result: CodeType | None = None


def flow(name: str) -> Flow:
    """The `Flow` a `%%flow NAME` cell defined in this kernel."""
    from IPython import get_ipython

    shell = get_ipython()
    found = shell.user_ns.get(name) if shell is not None else None
    if not isinstance(found, Flow):
        raise NameError(
            f"no flow named {name!r} in this kernel: run its `%%flow {name}` cell first"
        )
    return found


class Deployed(dict[str, Any]):
    """A deployment as the API returns it; a cell shows it as one line (the summary printed
    by `Flow.deploy` says the rest)."""

    def __repr__(self) -> str:
        return f"<deployment {self.get('full_name')!r}, version {self.get('version')}>"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))


class RunList(list[dict[str, Any]]):
    """Runs as plain dicts; in a notebook they display as the run-history widget."""

    def __init__(self, flow_name: str, runs: list[dict[str, Any]]) -> None:
        super().__init__(runs)
        self.flow_name = flow_name

    def _ipython_display_(self) -> None:
        from IPython.display import display

        from nbflows.widgets import run_history

        display(run_history(flow_name=self.flow_name, limit=max(len(self), 10)))


class Flow:
    """A flow defined by a `%%flow NAME` cell; the cell binds `NAME` to it.

    Call it to run the flow again: `NAME(**parameters)` sets each parameter as a variable of the
    notebook for the run (overriding, say, the parameters cell; the old values come back after)
    and returns the value of the cell's last expression. `runs()`, `deploy(...)` and
    `serve(...)` show its history, deploy it to a work pool and run it on a schedule here.
    """

    def __init__(
        self,
        name: str,
        source: str,
        options: FlowOptions | None = None,
        *,
        shell: InteractiveShell,
        magic_line: str | None = None,
        cell: ExecutedCell | None = None,
    ) -> None:
        self.name = name
        self.source = source
        self.options = options or FlowOptions()
        self._shell = shell
        self._magic_line = magic_line or f"%%flow {name}"
        # Tracebacks of later calls still name the cell that defined the flow. The display
        # hook knows the running cell's number (IPython 9 counts the next cell during a cell).
        self._cell_number = shell.displayhook.prompt_count
        #: The cell that defined the flow, as it ran: what deploying freezes.
        self.cell = cell or ExecutedCell(
            source=f"{self._magic_line}\n{source}", execution_count=self._cell_number
        )
        self._programs: dict[bool, _Program] = {}

    def __repr__(self) -> str:
        options = [
            f"{f.name}={getattr(self.options, f.name)!r}"
            for f in dataclasses.fields(self.options)
            if getattr(self.options, f.name) != f.default
        ]
        return f"Flow({', '.join([repr(self.name), *options])})"

    # -- running ---------------------------------------------------------------------------------

    def __call__(self, **parameters: Any) -> Any:
        """Run the flow again; returns the value of its last expression (None if there is none)."""
        __tracebackhide__ = True
        missing = [name for name in parameters if name not in self._shell.user_ns]
        if missing:
            raise InvalidInput(self._unknown_parameters_message(missing))
        return self.run(parameters)

    def run(self, parameters: Mapping[str, Any] | None = None, *, display: bool = False) -> Any:
        """Run the flow once (with its retries) as a tracked flow run.

        `display=True` runs it as the cell does: the last expression is shown through IPython's
        display hook and None is returned. The compiled code is checked first: a syntax error
        or top-level `await` raises before any run is recorded.
        """
        __tracebackhide__ = True
        program = self.compile(display=display)
        ctx = current_context(self._shell.user_ns)
        run = FlowRunRecord(
            flow_name=self.name,
            parameters=dict(parameters or {}),
            tags=list(self.options.tags),
            description=self.options.description,
            notebook_path=ctx.notebook_path,
            # The deployed cell flow's retries are its deployment's: the server retries the
            # whole run, in a fresh kernel.
            max_retries=0 if ctx.is_deployed_flow(self.name) else self.options.retries,
            retry_delay=self.options.retry_delay,
            parent=_current_run.get(),
        )
        with _overridden(self._shell.user_ns, run.parameters):
            reporter = get_reporter(ctx)
            line = None
            if display and not ctx.headless and isinstance(reporter, ApiReporter):
                line = RunStatusLine(flush=reporter.flush)
            return self._attempts(run, reporter, program, display, line)

    def compile(self, *, display: bool) -> _Program:
        """The body compiled for a cell (`display=True`) or a call; compiled once for each."""
        program = self._programs.get(display)
        if program is None:
            program = _compile(
                self._shell, self.source, self._magic_line, self._cell_number, display=display
            )
            self._programs[display] = program
        return program

    def _attempts(
        self,
        run: FlowRunRecord,
        reporter: Reporter,
        program: _Program,
        display: bool,
        line: RunStatusLine | None = None,
    ) -> Any:
        __tracebackhide__ = True
        on_main_thread = threading.current_thread() is threading.main_thread()
        while True:
            run.start_time, run.end_time = time.time(), None
            reporter.start_run(run)
            if line is not None:
                line.show(run, "RUNNING")
            token = _current_run.set(run)
            try:
                capture = RunCapture(
                    partial(reporter.log, run),
                    prints=self.options.log_prints,
                    thread=None if on_main_thread else threading.get_ident(),
                )
                with capture, _time_limit(self.options.timeout, self.name, run.key):
                    value = self._execute(program, display)
            except KeyboardInterrupt:
                run.end_time = time.time()
                reporter.finish(run, "CANCELLED", "interrupted (KeyboardInterrupt)")
                if line is not None:
                    line.show(run, "CANCELLED")
                raise
            except BaseException as exc:
                run.end_time = time.time()
                _drop_alarm_frame(exc)
                message, trace = self._describe_failure(exc, program)
                reporter.log(
                    run,
                    [{"timestamp": run.end_time, "level": 40, "message": trace, "source": "error"}],
                )
                retrying = (
                    isinstance(exc, Exception)
                    and run.attempt <= run.max_retries
                    and not _someone_elses_timeout(exc, run)
                )
                reporter.finish(run, "FAILED", message, retrying=retrying)
                if line is not None:
                    line.show(run, "SCHEDULED" if retrying else "FAILED", message)
                if not retrying:
                    raise
                self._wait_for_retry(run, reporter, message)
            else:
                run.end_time = time.time()
                reporter.finish(run, "COMPLETED", None)
                if line is not None:
                    line.show(run, "COMPLETED")
                return value
            finally:
                _current_run.reset(token)
            run.attempt += 1

    def _execute(self, program: _Program, display: bool) -> Any:
        __tracebackhide__ = True
        shell = self._shell
        global_ns, local_ns = shell.user_global_ns, shell.user_ns
        if display:
            # Already active inside a cell; needed when the magic is called directly.
            with shell.display_trap:
                for code in program.steps:
                    exec(code, global_ns, local_ns)
            return None
        for code in program.steps:
            exec(code, global_ns, local_ns)
        return None if program.result is None else eval(program.result, global_ns, local_ns)

    def _wait_for_retry(self, run: FlowRunRecord, reporter: Reporter, message: str) -> None:
        total = run.max_retries + 1
        print(
            f"nbflows: flow {self.name!r} attempt {run.attempt} of {total} failed "
            f"({message.splitlines()[0]}); retrying in {run.retry_delay:g} s",
            file=sys.stderr,
        )
        try:
            time.sleep(run.retry_delay)
        except KeyboardInterrupt:
            run.end_time = time.time()
            reporter.finish(run, "CANCELLED", "interrupted while waiting to retry")
            raise

    def _describe_failure(self, exc: BaseException, program: _Program) -> tuple[str, str]:
        """(state message, traceback text) of a failed attempt, from the flow's own code on."""
        tb = exc.__traceback__
        while tb is not None and tb.tb_frame.f_code.co_filename != program.filename:
            tb = tb.tb_next
        trace = "".join(traceback.format_exception(type(exc), exc, tb or exc.__traceback__))
        label = self._shell.compile.format_code_name(program.filename)
        if label is not None:
            trace = trace.replace(f'File "{program.filename}"', f"{label[0]} {label[1]}")
        summary = traceback.format_exception_only(type(exc), exc)[-1].strip()
        return f"{summary}\n\n{trace}", trace

    def _unknown_parameters_message(self, names: list[str]) -> str:
        tree = ast.parse(self._shell.transform_cell(self.source))
        reads = sorted(
            {
                node.id
                for node in ast.walk(tree)
                if isinstance(node, ast.Name)
                and isinstance(node.ctx, ast.Load)
                and node.id in self._shell.user_ns
                and not inspect.ismodule(self._shell.user_ns[node.id])
                and not callable(self._shell.user_ns[node.id])
            }
        )
        listed = ", ".join(repr(name) for name in names)
        return (
            f"unknown parameter {listed} for flow {self.name!r}: no variable of that name is "
            "defined in this notebook. A parameter overrides a variable defined before the flow "
            "runs (e.g. in the parameters cell); this flow reads: "
            f"{', '.join(reads) if reads else 'no such variables'}"
        )

    # -- history -------------------------------------------------------------------------------

    def runs(self, limit: int = 10) -> RunList:
        """The flow's most recent runs (FlowRun dicts, newest first), from the server or the
        local store; shown in a notebook as the run-history table and timeline."""
        ctx = current_context(self._shell.user_ns)
        if ctx.headless:
            _say_skipped(ctx, f"{self.name}.runs()")
            return RunList(self.name, [])
        return RunList(self.name, get_reporter(ctx).recent_runs(self.name, limit))

    def deploy_form(self, **kwargs: Any) -> Any:
        """A form to deploy this flow: pool, queue, schedule, typed parameters, image options."""
        from nbflows.widgets import deploy_form

        return deploy_form(self, **kwargs)

    # -- deploying -------------------------------------------------------------------------------

    def deploy(
        self,
        name: str,
        work_pool_name: str,
        work_queue_name: str | None = None,
        parameters: Mapping[str, Any] | None = None,
        job_variables: Mapping[str, Any] | None = None,
        cron: str | None = None,
        interval: float | timedelta | None = None,
        rrule: str | None = None,
        timezone: str | None = None,
        schedules: list[Schedule | Mapping[str, Any]] | None = None,
        paused: bool | None = None,
        tags: list[str] | None = None,
        description: str | None = None,
        version: str | None = None,
        image: DeploymentImage | str | None = None,
        build: bool = True,
        push: bool = False,
        move_pool: bool = False,
    ) -> dict[str, Any] | None:
        """Deploy this flow as `NAME/name` to `work_pool_name`; returns the deployment.

        What is frozen as the new version is the code this kernel ran: the flow cell as it
        ran, the parameters cell and the code cells above the flow cell (each as it last ran
        when the front end names its cells, as JupyterLab does; else as saved). The summary
        printed says which run of the flow cell was deployed and how the saved file differs.

        `cron`, `interval` (seconds) or `rrule`, in `timezone`, make one schedule; `schedules`
        adds more (`schedules=[]` removes them all). Deploying again keeps whatever is not given
        (schedules, parameters, job variables, queue, paused, image, and tags, description and
        retries unless the cell's options set them) and says what changed. A deployment stays
        on its work pool: deploying it to another pool is refused unless `move_pool=True`.
        `image` (a `DeploymentImage` or "name[:tag]") runs the flow in a Docker image on a
        docker work pool: the image is built here, from the saved notebook's project folder,
        before the deployment is made (so a failed build deploys nothing), unless
        `build=False`; it is pushed when `push=True`. The build's progress shows in the cell.
        In a headless run this does nothing.
        """
        ctx = current_context(self._shell.user_ns)
        if ctx.headless:
            _say_skipped(ctx, f"{self.name}.deploy()")
            return None
        from nbflows.client.deploy import deploy_request

        options = self.options
        body = deploy_request(
            path=None,
            flow_name=self.name,
            name=name,
            work_pool_name=work_pool_name,
            work_queue_name=work_queue_name,
            parameters=parameters,
            job_variables=job_variables,
            cron=cron,
            interval=interval,
            rrule=rrule,
            timezone=timezone,
            schedules=schedules,
            paused=paused,
            # The cell's options are the flow's own; what neither they nor the call set is kept.
            tags=list(tags) if tags is not None else (list(options.tags) or None),
            description=description if description is not None else options.description,
            version=version,
            retries=options.retries or None,
            retry_delay=options.retry_delay or None,
            move_pool=move_pool,
        )
        chosen = _deployment_image(image)
        with _server_client("Deploying") as client:
            if ctx.notebook_path is None:
                raise InvalidInput(
                    "cannot tell which notebook this kernel runs (JPY_SESSION_NAME is not set), "
                    "so there is nothing to deploy from; deploy from a terminal instead: "
                    f"nbflows deploy NOTEBOOK.ipynb:{self.name} --name {name} "
                    f"--pool {work_pool_name}"
                )
            body["path"] = ctx.notebook_path
            as_run = self._code_as_run(client, ctx.notebook_path)
            if as_run is not None:
                body["notebook"] = as_run.notebook
            if chosen is not None:
                body["image"] = _package_image(
                    client, ctx.notebook_path, self.name, chosen, body, build=build, push=push
                )
            deployment = _call_server(client, "Deploying", lambda: client.deploy(**body))
        code = as_run.report() if as_run is not None else "Code deployed: the saved file."
        print(_deploy_summary(deployment, ctx.notebook_path, code))
        return Deployed(deployment)

    def _code_as_run(self, client: Client, notebook_path: str) -> CodeAsRun | None:
        """The saved notebook with the sources this kernel ran (see `kernel_magics.executed`);
        None when the file cannot be read here (the server then says what is wrong with it)."""
        from nbflows.notebooks.loading import notebook_from_json

        try:
            text = _notebook_file(client, notebook_path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return None
        return code_as_run(
            notebook_from_json(text), self.name, self.cell, executed_cells(self._shell)
        )

    # -- notifications ---------------------------------------------------------------------------

    def notify_on_failure(
        self,
        url: str,
        *,
        secret: str | None = None,
        states: tuple[str, ...] = ("FAILED", "CRASHED"),
    ) -> dict[str, Any] | None:
        """Notify `url` whenever a run of this flow (here or deployed) ends FAILED or CRASHED.

        `url`: mailto://user:password@smtp-host:port?to=you@example.com&from=bot@example.com,
        an http(s) webhook (signed with HMAC-SHA256 when `secret` is given), or any apprise URL
        (slack://..., msteams://..., ntfy://...). Makes an automation on the server (see
        `nbflows automation ls`); calling it again with the same URL keeps the one there is.
        Passwords and tokens are never shown back. In a headless run this does nothing.
        """
        import hashlib
        import re

        from nbflows.errors import Conflict

        ctx = current_context(self._shell.user_ns)
        if ctx.headless:
            _say_skipped(ctx, f"{self.name}.notify_on_failure()")
            return None
        flow = re.sub(r"[^A-Za-z0-9_.\-]", "-", self.name)[:150]
        name = f"{flow}-on-failure-{hashlib.sha256(url.encode()).hexdigest()[:8]}"
        action: dict[str, Any] = {"type": "notify", "url": url}
        if secret is not None:
            action["secret"] = secret
        with _server_client("Notifying on failure") as client:
            try:
                rule = client.create_automation(
                    name,
                    {"kind": "state", "states": sorted(states)},
                    [action],
                    scope={"flow": self.name},
                    description=f"failures of flow {self.name}",
                )
            except Conflict:
                rule = client.read_automation(name)
        print(
            f"Runs of {self.name} that end {' or '.join(states)} notify {rule['actions'][0]['url']}"
        )
        return cast(dict[str, Any], rule)

    # -- serving ---------------------------------------------------------------------------------

    def serve(
        self,
        cron: str | None = None,
        interval: float | timedelta | None = None,
        rrule: str | None = None,
        timezone: str | None = None,
        schedules: list[Schedule | Mapping[str, Any]] | None = None,
        parameters: Mapping[str, Any] | None = None,
    ) -> ServeHandle | None:
        """Run the flow on a schedule inside this kernel, for as long as it lives; no work pool.

        Returns a `ServeHandle`; `handle.stop()` ends serving. In a Jupyter kernel a served run
        executes on the kernel's main thread between cells (never during one, so it cannot
        race your cells over the notebook's variables); elsewhere (terminal IPython) it runs on
        the serving thread. A run due while the previous one still runs is skipped. In a
        headless run this does nothing.
        """
        ctx = current_context(self._shell.user_ns)
        if ctx.headless:
            _say_skipped(ctx, f"{self.name}.serve()")
            return None
        chosen = _schedules(cron, interval, rrule, timezone, schedules)
        if not chosen:
            raise InvalidInput("serve() needs a schedule: cron=..., interval=... or rrule=...")
        missing = [name for name in (parameters or {}) if name not in self._shell.user_ns]
        if missing:
            raise InvalidInput(self._unknown_parameters_message(missing))
        return ServeHandle(self, chosen, dict(parameters or {}), *_kernel_loop(self._shell))


# --------------------------------------------------------------------------------------------
# Compiling a body the way IPython compiles a cell


def _compile(
    shell: InteractiveShell, source: str, first_line: str, cell_number: int, *, display: bool
) -> _Program:
    transformed = shell.transform_cell(source)
    # Line 1 of the cell is the magic line: with it in front, line numbers in tracebacks are
    # the cell's own, and the cached text shows the cell as the user wrote it.
    filename = shell.compile.cache(f"{first_line}\n{transformed}", cell_number, raw_code=source)
    tree = shell.compile.ast_parse("\n" + transformed, filename=filename)
    tree = shell.transform_ast(tree)
    nodes: list[ast.stmt] = list(tree.body)
    program = _Program(filename)
    result: ast.Expr | None = None
    if display:
        quiet = ";" in source and DisplayHook.semicolon_at_end_of_expression(source)
        exec_nodes, shown = _split_interactive(
            nodes, "none" if quiet else shell.ast_node_interactivity
        )
    else:
        shown = []
        if nodes and isinstance(nodes[-1], ast.Expr):
            exec_nodes, result = nodes[:-1], nodes[-1]
        else:
            exec_nodes = nodes
    # Compiled as IPython does (top-level await allowed) only to say clearly that it is not
    # supported here: a magic runs synchronously, inside the kernel's running event loop.
    compiler: Any = shell.compile  # typed as taking source text; it compiles ASTs too
    with compiler.extra_flags(getattr(ast, "PyCF_ALLOW_TOP_LEVEL_AWAIT", 0)):
        if exec_nodes:
            program.steps.append(compiler(ast.Module(exec_nodes, []), filename, "exec"))
        for node in shown:
            program.steps.append(compiler(ast.Interactive([node]), filename, "single"))
        if result is not None:
            program.result = compiler(ast.Expression(result.value), filename, "eval")
    codes = [*program.steps, *([program.result] if program.result else [])]
    if any(code.co_flags & inspect.CO_COROUTINE for code in codes):
        raise UsageError(
            "top-level `await` is not supported in a %%flow cell; put the async code in an "
            "`async def main()` and call `asyncio.run(main())` from a thread, or use "
            "`nest_asyncio`"
        )
    return program


_ASSIGNMENTS = (ast.Assign, ast.AnnAssign, ast.AugAssign)


def _split_interactive(
    nodes: list[ast.stmt], interactivity: str
) -> tuple[list[ast.stmt], list[ast.stmt]]:
    """(nodes run silently, nodes whose value is displayed), as `run_ast_nodes` decides."""
    if not nodes:
        return [], []
    if interactivity == "last_expr_or_assign":
        last = nodes[-1]
        target: ast.expr | None = None
        if isinstance(last, ast.Assign) and len(last.targets) == 1:
            target = last.targets[0]
        elif isinstance(last, ast.AnnAssign | ast.AugAssign):
            target = last.target
        if isinstance(target, ast.Name):
            shown = ast.Expr(ast.Name(target.id, ast.Load()))
            ast.copy_location(shown, last)
            ast.fix_missing_locations(shown)
            return nodes, [shown]
        interactivity = "last_expr"
    if interactivity == "last_expr":
        interactivity = "last" if isinstance(nodes[-1], ast.Expr) else "none"
    if interactivity == "none":
        return nodes, []
    if interactivity == "last":
        return nodes[:-1], nodes[-1:]
    if interactivity == "all":
        return [], nodes
    raise UsageError(f"unknown InteractiveShell.ast_node_interactivity {interactivity!r}")


# --------------------------------------------------------------------------------------------
# Parameters, timeouts


@contextmanager
def _overridden(namespace: dict[str, Any], values: Mapping[str, Any]) -> Iterator[None]:
    """Set `values` in `namespace` for the block; then restore what the flow did not rebind."""
    if not values:
        yield
        return
    saved = {name: namespace.get(name, _MISSING) for name in values}
    namespace.update(values)
    try:
        yield
    finally:
        for name, old in saved.items():
            if namespace.get(name, _MISSING) is values[name]:
                if old is _MISSING:
                    namespace.pop(name, None)
                else:
                    namespace[name] = old


def _time_limit(seconds: float | None, flow_name: str, run_key: str) -> Any:
    """A context manager interrupting its block with `FlowTimeout` after `seconds`.

    On the main thread a SIGALRM timer raises in the running code, even inside `time.sleep` or a
    blocking read; elsewhere the exception is injected into the thread, which sees it at its next
    Python instruction (not while blocked inside C code).
    """
    if seconds is None:
        return nullcontext()
    message = f"flow {flow_name!r} timed out after {seconds:g} s (--timeout {seconds:g})"
    if threading.current_thread() is threading.main_thread() and hasattr(signal, "setitimer"):
        return _alarm(seconds, message, run_key)
    return _injected_timeout(seconds, message, run_key)


def _raise_timeout(message: str, run_key: str, signum: int, frame: Any) -> None:
    exc = FlowTimeout(message)
    exc.run_key = run_key
    raise exc


def _someone_elses_timeout(exc: BaseException, run: FlowRunRecord) -> bool:
    return isinstance(exc, FlowTimeout) and exc.run_key not in (None, run.key)


@contextmanager
def _alarm(seconds: float, message: str, run_key: str) -> Iterator[None]:
    outer_delay, outer_interval = signal.getitimer(signal.ITIMER_REAL)
    if outer_delay and outer_delay <= seconds:
        # An enclosing limit (an outer flow's, pytest-timeout's) fires first anyway.
        yield
        return
    previous = signal.signal(signal.SIGALRM, partial(_raise_timeout, message, run_key))
    signal.setitimer(signal.ITIMER_REAL, seconds)
    started = time.monotonic()
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        if outer_delay:
            remaining = outer_delay - (time.monotonic() - started)
            signal.setitimer(signal.ITIMER_REAL, max(remaining, 0.001), outer_interval)


@contextmanager
def _injected_timeout(seconds: float, message: str, run_key: str) -> Iterator[None]:
    target = threading.get_ident()
    lock = threading.Lock()
    state = {"done": False, "fired": False}

    def fire() -> None:
        with lock:
            if not state["done"]:
                state["fired"] = True
                ctypes.pythonapi.PyThreadState_SetAsyncExc(
                    ctypes.c_ulong(target), ctypes.py_object(FlowTimeout)
                )

    timer = threading.Timer(seconds, fire)
    timer.daemon = True
    timer.start()
    try:
        yield
    except FlowTimeout as exc:
        if state["fired"] and not exc.args:  # ours, injected as a bare class
            exc.args = (message,)
            exc.run_key = run_key
        raise
    finally:
        timer.cancel()
        with lock:
            state["done"] = True
            if state["fired"]:  # fired just as the block ended: withdraw it if still pending
                ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(target), None)


def _drop_alarm_frame(exc: BaseException) -> None:
    # The SIGALRM handler raised the timeout; the user's interrupted line is the frame to show.
    if not isinstance(exc, FlowTimeout) or exc.__traceback__ is None:
        return
    tb = exc.__traceback__
    while tb.tb_next is not None and tb.tb_next.tb_next is not None:
        tb = tb.tb_next
    if tb.tb_next is not None and tb.tb_next.tb_frame.f_code is _raise_timeout.__code__:
        tb.tb_next = None


# --------------------------------------------------------------------------------------------
# Deploying


def _say_skipped(ctx: KernelContext, what: str) -> None:
    print(f"nbflows: {what} does nothing here: this kernel is running flow run {ctx.flow_run_id}")


def _schedules(
    cron: str | None,
    interval: float | timedelta | None,
    rrule: str | None,
    timezone: str | None,
    schedules: list[Schedule | Mapping[str, Any]] | None,
) -> list[Schedule]:
    from nbflows.scheduling.schedules import make_schedule, parse_schedule

    chosen = [parse_schedule(s) for s in schedules or []]
    if cron is not None or interval is not None or rrule is not None:
        chosen.append(make_schedule(cron=cron, interval=interval, rrule=rrule, timezone=timezone))
    elif timezone is not None:
        raise InvalidInput("timezone applies to a schedule: give cron=, interval= or rrule= too")
    return chosen


def _deployment_image(image: DeploymentImage | str | None) -> DeploymentImage | None:
    if image is None or not isinstance(image, str):
        return image
    from nbflows.packaging.images import DeploymentImage

    return DeploymentImage(name=image)


def _notebook_file(client: Client, notebook_path: str) -> Path:
    """The notebook's file: JPY_SESSION_NAME may be relative to the server's root."""
    path = Path(notebook_path)
    if not path.is_absolute():
        root = client.root_dir or _call_server(
            client, "Deploying", lambda: client.health().get("root_dir")
        )
        path = Path(str(root or ".")) / path
    return path


def _package_image(
    client: Client,
    notebook_path: str,
    flow_name: str,
    image: DeploymentImage,
    body: Mapping[str, Any],
    *,
    build: bool,
    push: bool,
) -> dict[str, Any]:
    """Build (and push) the deployment's image here, where the notebook and the Docker engine
    are, showing the build's progress in the cell; returns the deploy request's `image`."""
    from nbflows.packaging.build import build_for_deploy

    pool_name = str(body["work_pool_name"])
    pool = _call_server(client, "Deploying", lambda: client.read_work_pool(pool_name))
    path = _notebook_file(client, notebook_path)
    with _BuildProgress() as progress:
        return build_for_deploy(
            path,
            flow_name,
            image,
            pool,
            build=build,
            push=push,
            progress=progress,
            job_variables=body.get("job_variables"),
        )


class _BuildProgress:
    """The build's output in the cell, redrawn in place (at most every `INTERVAL` seconds):
    the step it is at and its last lines, so that a long `pip install` does not flood the
    notebook. Outside a kernel (plain IPython) the lines are printed as they come."""

    INTERVAL = 0.25
    KEPT = 12

    def __init__(self) -> None:
        from collections import deque

        from IPython.core.getipython import get_ipython

        self._in_kernel = getattr(get_ipython(), "kernel", None) is not None
        self._lines: deque[str] = deque(maxlen=self.KEPT)
        self._step = ""
        self._handle: Any = None
        self._shown = 0.0
        self._started = time.monotonic()

    def __enter__(self) -> _BuildProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._in_kernel:
            self._show()

    def __call__(self, line: str) -> None:
        if not self._in_kernel:
            print(line, flush=True)
            return
        if line.startswith("Step "):
            self._step = line
        self._lines.append(line)
        if time.monotonic() - self._shown >= self.INTERVAL:
            self._show()

    def _show(self) -> None:
        from IPython.display import display

        took = time.monotonic() - self._started
        head = [f"[{took:.0f} s] {self._step}"] if self._step else []
        bundle = {"text/plain": "\n".join([*head, *self._lines])}
        if self._handle is None:
            self._handle = display(bundle, raw=True, display_id=True)
        else:
            self._handle.update(bundle, raw=True)
        self._shown = time.monotonic()


def _no_server_message(action: str, detail: object) -> str:
    return (
        f"{action} needs a running nbflows server: scheduled and deployed runs are executed by "
        "`nbflows server` or by Jupyter (jupyter lab / jupyter server) with the nbflows "
        f"extension. Start one, then run this again. ({detail})"
    )


@contextmanager
def _server_client(action: str) -> Iterator[Client]:
    from nbflows.client.rest import NoServerError, get_client

    try:
        client = get_client()
    except NoServerError as exc:
        raise NoServerError(_no_server_message(action, exc)) from None
    with client:
        yield client


def _call_server(client: Client, action: str, request: Any) -> Any:
    from nbflows.client.rest import NoServerError

    try:
        return request()
    except NoServerError as exc:
        raise NoServerError(_no_server_message(action, exc)) from None


def _deploy_summary(deployment: Mapping[str, Any], notebook_path: str, code: str) -> str:
    from nbflows.presentation import change_text
    from nbflows.scheduling.schedules import parse_schedule

    full_name = deployment.get("full_name") or f"{deployment.get('flow_name')}/{deployment['name']}"
    lines = [
        f"Deployed {full_name!r} (version {deployment.get('version')}) from {notebook_path} "
        f"to work pool {deployment.get('work_pool_name')!r}, "
        f"queue {deployment.get('work_queue_name') or 'default'!r}.",
        code,
    ]
    changes = deployment.get("changes") or []
    if changes:
        lines.append(f"Changed since version {deployment.get('version', 1) - 1}:")
        lines.extend(f"  {change_text(change)}" for change in changes)
    image = deployment.get("image") or {}
    if image.get("reference"):
        lines.append(f"Image: {image['reference']}")
    now = datetime.now(timezone.utc)
    for data in deployment.get("schedules") or []:
        schedule = parse_schedule(data)
        times = schedule.next_times(now, now + timedelta(days=400), limit=3)
        shown = ", ".join(_local_time(t, schedule.timezone) for t in times) or "none"
        lines.append(f"Schedule {schedule.describe()}: next runs {shown}")
    if deployment.get("paused"):
        lines.append("Paused: no run is scheduled until it is resumed.")
    lines.append(f"Run it now: nbflows deployment run '{full_name}'")
    return "\n".join(lines)


def _local_time(moment: datetime, zone: str) -> str:
    from zoneinfo import ZoneInfo

    return moment.astimezone(ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M %Z")


# --------------------------------------------------------------------------------------------
# Serving


def _kernel_loop(
    shell: InteractiveShell,
) -> tuple[asyncio.AbstractEventLoop | None, asyncio.Lock | None]:
    """The kernel's event loop (None outside ipykernel) and the lock its cells run under.

    ipykernel runs each cell holding `kernel._main_asyncio_lock`; a served run takes the same
    lock, so it never starts while a cell (even an async one) is running. That attribute is
    private: without it, a served run still waits for synchronous cells, which hold the loop.
    """
    import asyncio

    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return None, None
    lock = getattr(getattr(shell, "kernel", None), "_main_asyncio_lock", None)
    return loop, lock if isinstance(lock, asyncio.Lock) else None


class ServeHandle:
    """A flow served on its schedules inside this kernel; `stop()` ends serving.

    A thread sleeps until the next scheduled time, then has the flow run (on the kernel's main
    thread when there is a kernel event loop, see `Flow.serve`) and waits for it to finish
    before looking at the schedule again; so runs never overlap, and times missed while a run
    (or a long cell) went on are skipped, not caught up.
    """

    def __init__(
        self,
        flow: Flow,
        schedules: list[Schedule],
        parameters: dict[str, Any],
        loop: asyncio.AbstractEventLoop | None = None,
        kernel_lock: asyncio.Lock | None = None,
    ) -> None:
        self.flow = flow
        self.schedules = schedules
        self.parameters = parameters
        #: When the next run is due (aware UTC), None once serving has stopped.
        self.next_run: datetime | None = None
        #: How many runs were started.
        self.run_count = 0
        self._loop = loop
        self._kernel_lock = kernel_lock
        self._stopped = threading.Event()
        self._thread = threading.Thread(
            target=self._serve, name=f"nbflows-serve-{flow.name}", daemon=True
        )
        self._thread.start()

    def __repr__(self) -> str:
        if not self.running:
            return f"<ServeHandle {self.flow.name!r}: stopped after {self.run_count} runs>"
        when = self.next_run.isoformat(" ", "seconds") if self.next_run else "soon"
        return (
            f"<ServeHandle {self.flow.name!r}: {self.run_count} runs so far, next at {when}; "
            ".stop() to end>"
        )

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def stop(self, timeout: float | None = 30.0) -> None:
        """Stop serving; a run in progress finishes first (waits up to `timeout` seconds)."""
        self._stopped.set()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    def _serve(self) -> None:
        last_due: datetime | None = None
        while not self._stopped.is_set():
            now = datetime.now(timezone.utc)
            after = max(now, last_due) if last_due is not None else now
            due = [
                t
                for schedule in self.schedules
                for t in schedule.next_times(after, after + timedelta(days=400), limit=1)
            ]
            if not due:
                break
            self.next_run = last_due = min(due)
            if self._stopped.wait((self.next_run - now).total_seconds()):
                break
            if not self._run_once():
                break
        self.next_run = None

    def _run_once(self) -> bool:
        """Run the flow once; False when the kernel's loop is gone (the kernel is stopping)."""
        self.run_count += 1
        if self._loop is None:
            error = self._call()
        else:
            import asyncio

            try:
                future = asyncio.run_coroutine_threadsafe(self._call_on_loop(), self._loop)
            except RuntimeError:
                return False
            error = future.result()
        if error is not None:
            # The run's failure is recorded with its traceback; serving goes on.
            summary = traceback.format_exception_only(type(error), error)[-1].strip()
            print(
                f"nbflows: served run of flow {self.flow.name!r} failed: {summary}", file=sys.stderr
            )
        return True

    async def _call_on_loop(self) -> BaseException | None:
        if self._kernel_lock is None:
            return self._call()
        async with self._kernel_lock:
            return self._call()

    def _call(self) -> BaseException | None:
        # Returned, not raised: a KeyboardInterrupt raised out of a task would stop the loop.
        try:
            self.flow(**self.parameters)
        except BaseException as exc:
            return exc
        return None
