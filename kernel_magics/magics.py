"""The IPython magics: `%%flow` runs a cell as a tracked flow run, `%deploy` deploys a flow."""

from __future__ import annotations

import argparse
import keyword
import shlex
from typing import TYPE_CHECKING, Any, cast

from IPython.core import magic_arguments
from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class, no_var_expand

from nbflows.errors import InvalidInput, NBFlowsError

if TYPE_CHECKING:
    from IPython.core.interactiveshell import InteractiveShell
from nbflows.kernel_magics.executed import executed_cells
from nbflows.kernel_magics.flow import Flow, FlowOptions

__all__ = ["FlowMagics", "parse_flow_line"]


def _parse_args(magic: Any, line: str) -> argparse.Namespace:
    # Split as a shell would (quotes removed), as the server does when it reads the cell:
    # IPython's own `parse_argstring` keeps the quotes in the values.
    try:
        argv = shlex.split(line)
    except ValueError as exc:
        raise UsageError(f"cannot read the options {line!r}: {exc}") from None
    return cast(argparse.Namespace, magic.parser.parse_args(argv))


def parse_flow_line(line: str) -> tuple[str, FlowOptions]:
    """`NAME [options]` of a `%%flow` line → (name, options); `UsageError` when invalid."""
    args = _parse_args(FlowMagics.flow, line)
    name = args.name
    if not name.isidentifier() or keyword.iskeyword(name):
        raise UsageError(
            f"%%flow: {name!r} is not a valid flow name; the name becomes a Python variable, so "
            "use letters, digits and underscores, not starting with a digit (e.g. summarize)"
        )
    if args.retries < 0:
        raise UsageError(f"%%flow: --retries must be 0 or more, not {args.retries}")
    if args.retry_delay < 0:
        raise UsageError(f"%%flow: --retry-delay must be 0 or more seconds, not {args.retry_delay}")
    if args.timeout is not None and args.timeout <= 0:
        raise UsageError(f"%%flow: --timeout must be more than 0 seconds, not {args.timeout}")
    tags = tuple(tag.strip() for tag in (args.tags or "").split(",") if tag.strip())
    options = FlowOptions(
        retries=args.retries,
        retry_delay=args.retry_delay,
        timeout=args.timeout,
        tags=tags,
        log_prints=args.log_prints,
        description=args.description,
    )
    return name, options


@magics_class
class FlowMagics(Magics):
    """`%%flow` and `%deploy`; registered by `%load_ext nbflows`."""

    @property
    def _shell(self) -> InteractiveShell:
        # Always set once registered with a shell, which is the only way these magics run.
        return cast("InteractiveShell", self.shell)

    @magic_arguments.magic_arguments("%flow")  # shown as `%%flow` in the help
    @magic_arguments.argument("name", help="the flow's name; the cell binds it to a Flow object")
    @magic_arguments.argument(
        "--retries", type=int, default=0, help="run the body again this many times on failure"
    )
    @magic_arguments.argument(
        "--retry-delay", type=float, default=0.0, metavar="S", help="seconds between attempts"
    )
    @magic_arguments.argument(
        "--timeout", type=float, default=None, metavar="S", help="fail an attempt after S seconds"
    )
    @magic_arguments.argument("--tags", default="", help="comma-separated tags, e.g. sales,daily")
    @magic_arguments.argument(
        "--log-prints",
        dest="log_prints",
        action="store_true",
        default=True,
        help="record printed output (stdout, stderr) as log lines too (the default)",
    )
    @magic_arguments.argument(
        "--no-log-prints",
        dest="log_prints",
        action="store_false",
        help="only logging records become log lines; printed output is shown, not recorded",
    )
    @magic_arguments.argument("--description", default=None, help="what the flow does")
    @no_var_expand
    @cell_magic
    def flow(self, line: str, cell: str) -> None:
        """Run the cell as a flow run, and bind NAME to a Flow object.

        The cell runs in the notebook's namespace exactly as a plain cell would (its
        variables persist, its last expression is displayed), while nbflows records a flow
        run: its state (RUNNING, then COMPLETED or FAILED), start and end times, what it prints
        and logs as log lines, and on failure the traceback, after which the error shows in
        the cell as usual. Runs go to the nbflows server when one is found, to the local store
        otherwise; when a worker runs the notebook, they are reported to the worker.

        Afterwards NAME is a Flow: NAME() runs it again (NAME(x=1) with the notebook variable
        x set to 1 for that run), NAME.runs() lists its runs, NAME.deploy(...) deploys it to a
        work pool (see also %deploy) and NAME.serve(...) runs it on a schedule in this kernel.

        Examples
        --------
        A tracked cell, retried twice, 5 seconds apart::

            %%flow summarize --retries 2 --retry-delay 5 --tags sales,daily
            df = pd.read_csv(repo_path)
            print(len(df), "rows")
            df.describe()

        A time limit, and printed output shown but not recorded::

            %%flow refresh --timeout 600 --no-log-prints --description "reload the cache"
            refresh_cache()

        Then, in other cells::

            summarize(repo_path="data/other.csv")
            summarize.deploy(name="nightly", work_pool_name="my-pool", cron="0 6 * * *")
        """
        __tracebackhide__ = True
        name, options = parse_flow_line(line)
        shell = self._shell
        ran = executed_cells(shell).current
        flow = Flow(
            name,
            cell,
            options,
            shell=shell,
            magic_line=f"%%flow {line}",
            # The cell as the kernel ran it (with its id, in JupyterLab): what deploy freezes.
            cell=ran if ran is not None and ran.defines_flow(name) else None,
        )
        # Compiled before binding: a cell with a syntax error changes nothing, like any cell.
        flow.compile(display=True)
        shell.user_ns[name] = flow
        flow.run(display=True)

    @magic_arguments.magic_arguments()
    @magic_arguments.argument("flow", metavar="NAME", help="a flow defined by a %%flow cell")
    @magic_arguments.argument("--name", required=True, metavar="D", help="the deployment's name")
    @magic_arguments.argument("--pool", required=True, metavar="P", help="the work pool")
    @magic_arguments.argument("--queue", default=None, metavar="Q", help="the pool's work queue")
    @magic_arguments.argument("--cron", default=None, metavar="EXPR", help="e.g. '0 6 * * *'")
    @magic_arguments.argument("--interval", type=float, default=None, metavar="S", help="seconds")
    @magic_arguments.argument("--rrule", default=None, metavar="RULE", help="e.g. FREQ=DAILY")
    @magic_arguments.argument(
        "--timezone", default=None, metavar="TZ", help="IANA zone of the schedule"
    )
    @magic_arguments.argument(
        "--param",
        action="append",
        default=[],
        metavar="K=V",
        help="a default parameter (repeatable); V is a Python literal or else text",
    )
    @magic_arguments.argument(
        "--no-schedule",
        action="store_true",
        help="remove the deployment's schedules (deploying again keeps them otherwise)",
    )
    @magic_arguments.argument(
        "--move-pool",
        action="store_true",
        help="move an existing deployment to --pool (refused otherwise)",
    )
    @magic_arguments.argument(
        "--image", default=None, metavar="NAME[:TAG]", help="run in this Docker image (built)"
    )
    @no_var_expand
    @line_magic
    def deploy(self, line: str) -> None:
        """Deploy the flow NAME to a work pool, as NAME.deploy(...) does, and say what it did.

        The code deployed is the code this kernel ran (the flow cell as it last ran). Deploying
        again keeps what is not given (schedules, parameters...) and says what changed.

        Examples
        --------
        ::

            %deploy summarize --name nightly --pool my-pool --cron "0 6 * * *" --timezone Europe/Paris
            %deploy summarize --name adhoc --pool docker-pool --param repo_path=data/x.csv --image sales
        """
        args = _parse_args(FlowMagics.deploy, line)
        flow = self._shell.user_ns.get(args.flow)
        if not isinstance(flow, Flow):
            raise UsageError(
                f"%deploy: {args.flow!r} is not a flow of this notebook; run its "
                f"`%%flow {args.flow}` cell first"
            )
        from nbflows.notebooks.parameters import parse_key_values

        try:  # the CLI's reading of `--param`: `flag=true` is True, `n=3` is 3
            parameters = parse_key_values(args.param, "--param")
        except InvalidInput as exc:
            raise UsageError(
                f"%deploy: --param takes NAME=VALUE (e.g. --param n=3); {exc.message}"
            ) from None
        if args.no_schedule and (args.cron or args.interval or args.rrule):
            raise UsageError("%deploy: --no-schedule removes the schedules; give no --cron too")
        try:
            flow.deploy(
                name=args.name,
                work_pool_name=args.pool,
                work_queue_name=args.queue,
                parameters=parameters or None,
                schedules=[] if args.no_schedule else None,
                move_pool=args.move_pool,
                cron=args.cron,
                interval=args.interval,
                rrule=args.rrule,
                timezone=args.timezone,
                image=args.image,
            )
        except NBFlowsError as exc:
            raise UsageError(f"%deploy: {exc.message}") from None
