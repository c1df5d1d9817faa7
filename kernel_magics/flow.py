"""Flow objects: the code of a `%%flow` cell, run as a tracked flow run, deployable and servable.

Running a flow runs its code in the user namespace the way IPython runs a cell (see
`cell_code`), inside one flow run: each attempt is reported (see `reporting`), what it
prints and logs becomes log lines (see `capture`), an exception fails the attempt and, once no
retry is left, propagates unchanged, so the cell shows it as it would show any error.

Time limits are in `timeouts`, deploying in `flow_deploy`, serving in `serving`.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import sys
import threading
import time
import traceback
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from typing import TYPE_CHECKING, Any, cast

from nbflows.client.context import current_context
from nbflows.errors import InvalidInput
from nbflows.kernel_magics.capture import RunCapture
from nbflows.kernel_magics.cell_code import Program, compile_cell
from nbflows.kernel_magics.executed import CodeAsRun, ExecutedCell, code_as_run, executed_cells
from nbflows.kernel_magics.flow_deploy import (
    call_server,
    deploy_schedules,
    deploy_summary,
    deployment_image,
    notebook_file,
    package_image,
    say_skipped,
    server_client,
)
from nbflows.kernel_magics.reporting import ApiReporter, FlowRunRecord, Reporter, get_reporter
from nbflows.kernel_magics.serving import ServeHandle, kernel_loop
from nbflows.kernel_magics.status_line import RunStatusLine
from nbflows.kernel_magics.timeouts import (
    drop_alarm_frame,
    parameters_overridden,
    someone_elses_timeout,
    time_limit,
)

if TYPE_CHECKING:
    from IPython.core.interactiveshell import InteractiveShell

    from nbflows.client.rest import Client
    from nbflows.packaging.images import DeploymentImage
    from nbflows.scheduling.schedules import Schedule

__all__ = ["Flow", "FlowOptions"]
#: The run being executed on this thread (or asyncio task): the parent of a flow it calls.
_current_run: ContextVar[FlowRunRecord | None] = ContextVar("nbflows_current_run", default=None)


def current_run() -> FlowRunRecord | None:
    """The innermost `%%flow` run executing now on this thread, if any."""
    return _current_run.get()


@dataclass(frozen=True)
class FlowOptions:
    """The options of `%%flow NAME [options]` (see the magic's help)."""

    retries: int = 0
    retry_delay: float = 0.0
    timeout: float | None = None
    tags: tuple[str, ...] = ()
    log_prints: bool = True
    description: str | None = None


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
        self._programs: dict[bool, Program] = {}

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
        with parameters_overridden(self._shell.user_ns, run.parameters):
            reporter = get_reporter(ctx)
            line = None
            if display and not ctx.headless and isinstance(reporter, ApiReporter):
                line = RunStatusLine()
            return self._attempts(run, reporter, program, display, line)

    def compile(self, *, display: bool) -> Program:
        """The body compiled for a cell (`display=True`) or a call; compiled once for each."""
        program = self._programs.get(display)
        if program is None:
            program = compile_cell(
                self._shell, self.source, self._magic_line, self._cell_number, display=display
            )
            self._programs[display] = program
        return program

    def _attempts(
        self,
        run: FlowRunRecord,
        reporter: Reporter,
        program: Program,
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
                with capture, time_limit(self.options.timeout, self.name, run.key):
                    value = self._execute(program, display)
            except KeyboardInterrupt:
                run.end_time = time.time()
                reporter.finish(run, "CANCELLED", "interrupted (KeyboardInterrupt)")
                if line is not None:
                    line.show(run, "CANCELLED")
                raise
            except BaseException as exc:
                run.end_time = time.time()
                drop_alarm_frame(exc)
                message, trace = self._describe_failure(exc, program)
                reporter.log(
                    run,
                    [{"timestamp": run.end_time, "level": 40, "message": trace, "source": "error"}],
                )
                retrying = (
                    isinstance(exc, Exception)
                    and run.attempt <= run.max_retries
                    and not someone_elses_timeout(exc, run)
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

    def _execute(self, program: Program, display: bool) -> Any:
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

    def _describe_failure(self, exc: BaseException, program: Program) -> tuple[str, str]:
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
            say_skipped(ctx, f"{self.name}.runs()")
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
            say_skipped(ctx, f"{self.name}.deploy()")
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
        chosen = deployment_image(image)
        with server_client("Deploying") as client:
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
                body["image"] = package_image(
                    client, ctx.notebook_path, self.name, chosen, body, build=build, push=push
                )
            deployment = call_server(client, "Deploying", lambda: client.deploy(**body))
        code = as_run.report() if as_run is not None else "Code deployed: the saved file."
        print(deploy_summary(deployment, ctx.notebook_path, code))
        return Deployed(deployment)

    def _code_as_run(self, client: Client, notebook_path: str) -> CodeAsRun | None:
        """The saved notebook with the sources this kernel ran (see `kernel_magics.executed`);
        None when the file cannot be read here (the server then says what is wrong with it)."""
        from nbflows.notebooks.loading import notebook_from_json

        try:
            text = notebook_file(client, notebook_path).read_text(encoding="utf-8")
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
            say_skipped(ctx, f"{self.name}.notify_on_failure()")
            return None
        flow = re.sub(r"[^A-Za-z0-9_.\-]", "-", self.name)[:150]
        name = f"{flow}-on-failure-{hashlib.sha256(url.encode()).hexdigest()[:8]}"
        action: dict[str, Any] = {"type": "notify", "url": url}
        if secret is not None:
            action["secret"] = secret
        with server_client("Notifying on failure") as client:
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
            say_skipped(ctx, f"{self.name}.serve()")
            return None
        chosen = deploy_schedules(cron, interval, rrule, timezone, schedules)
        if not chosen:
            raise InvalidInput("serve() needs a schedule: cron=..., interval=... or rrule=...")
        missing = [name for name in (parameters or {}) if name not in self._shell.user_ns]
        if missing:
            raise InvalidInput(self._unknown_parameters_message(missing))
        return ServeHandle(self, chosen, dict(parameters or {}), *kernel_loop(self._shell))
