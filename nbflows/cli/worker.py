"""`nbflows worker start`: a worker that executes the flow runs of work pools on this machine."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Sequence
from types import FrameType
from typing import Any

import typer

from nbflows.cli import output as out
from nbflows.cli.common import client, use_token
from nbflows.client.rest import Client
from nbflows.errors import InvalidInput, NBFlowsError, NotFound
from nbflows.workers import get_worker_class, worker_types
from nbflows.workers.base import BaseWorker
from nbflows.workers.worker_state import DEFAULT_GRACE, DEFAULT_HEARTBEAT_INTERVAL, DEFAULT_LIMIT

#: The environment variable a worker reads its credential from.
WORKER_TOKEN_ENV = "NBFLOWS_WORKER_TOKEN"

app = typer.Typer(
    help="Run workers that execute the flow runs of work pools.",
    no_args_is_help=True,
)


@app.command()
def start(
    pool: list[str] | None = typer.Option(
        None, "--pool", "-p", help="Work pool to serve. Repeat for several."
    ),
    type_: list[str] | None = typer.Option(
        None,
        "--type",
        "-t",
        help="Pool type: serve every pool of this type, also pools created later. "
        "With --pool: only check that the pools are of this type.",
    ),
    queue: list[str] | None = typer.Option(
        None, "--queue", "-q", help="Claim only from this work queue. Repeat for several."
    ),
    limit: int = typer.Option(
        DEFAULT_LIMIT, "--limit", "-l", min=1, help="Runs executed at the same time."
    ),
    name: str | None = typer.Option(
        None,
        "--name",
        "-n",
        help="Worker name (default: type and host name, the same after a restart).",
    ),
    heartbeat_interval: float = typer.Option(
        DEFAULT_HEARTBEAT_INTERVAL,
        "--heartbeat-interval",
        min=0.1,
        help="Seconds between heartbeats; runs of a worker silent for 3 intervals crash.",
    ),
    grace: float = typer.Option(
        DEFAULT_GRACE,
        "--grace",
        min=0,
        help="On SIGTERM/SIGINT, seconds running runs may take to finish before they are "
        "handed back to the server for another worker (a second signal hands them back at once).",
    ),
    worker_token: str | None = typer.Option(
        None,
        "--worker-token",
        envvar=WORKER_TOKEN_ENV,
        show_envvar=False,
        help=f"A worker credential (`nbflows worker-token create`; env {WORKER_TOKEN_ENV}): "
        "it may only claim and report for its pools. Default: the global --token.",
    ),
    exit_with_parent: bool = typer.Option(
        False,
        "--exit-with-parent",
        hidden=True,
        help="Stop when the parent process is gone (the embedded worker of a server).",
    ),
) -> None:
    """Claim and execute due flow runs until stopped (SIGTERM or Ctrl-C).

    Examples: `nbflows worker start --pool my-pool`, `nbflows worker start --type process`.
    """
    if worker_token:
        use_token(worker_token)
    api = client()
    workers = build_workers(
        api,
        pools=pool or [],
        types=type_ or [],
        queues=queue or None,
        limit=limit,
        name=name,
        heartbeat_interval=heartbeat_interval,
        grace=grace,
    )
    if exit_with_parent:
        _stop_with_parent(workers)
    serve_until_stopped(workers)


def _stop_with_parent(workers: list[BaseWorker]) -> None:
    """Stop the workers at once when the parent process dies. A server killed with -9 leaves
    its embedded worker behind; the server started next runs its own under the same name."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            threading.Event().wait(1.0)
        for worker in workers:
            worker.stop("its server process is gone", now=True)

    threading.Thread(target=watch, name="nbflows-parent-watch", daemon=True).start()


def build_workers(
    api: Client,
    *,
    pools: Sequence[str],
    types: Sequence[str],
    queues: list[str] | None,
    limit: int,
    name: str | None,
    heartbeat_interval: float,
    grace: float,
) -> list[BaseWorker]:
    """One worker per pool type asked for; raises a clear `NBFlowsError` for what cannot be."""
    if not pools and not types:
        raise InvalidInput(
            "say what to serve: --pool NAME (repeatable) or --type TYPE "
            f"(worker types: {', '.join(worker_types())})"
        )
    by_type: dict[str, list[str] | None] = {}
    if pools:
        for info in _read_pools(api, pools, queues):
            kind = str(info.get("type"))
            if types and kind not in types:
                raise InvalidInput(
                    f"work pool '{info['name']}' is a {kind} pool, not {' or '.join(types)}"
                )
            served = by_type.setdefault(kind, [])
            assert served is not None
            served.append(str(info["name"]))
    else:
        by_type = dict.fromkeys(types)
    options: dict[str, Any] = {
        "queues": queues,
        "limit": limit,
        "heartbeat_interval": heartbeat_interval,
        "grace": grace,
        "echo": out.echo,  # what it says names runs: shown cleaned of escape sequences
    }
    return [
        get_worker_class(kind)(api, name=name, pools=served, **options)
        for kind, served in by_type.items()
    ]


def _read_pools(
    api: Client, names: Sequence[str], queues: list[str] | None
) -> list[dict[str, Any]]:
    found = []
    for pool_name in dict.fromkeys(names):
        try:
            found.append(api.read_work_pool(pool_name))
        except NotFound:
            known = ", ".join(sorted(p["name"] for p in api.list_work_pools())) or "none"
            raise NotFound(
                f"no work pool named '{pool_name}'; work pools: {known} "
                f"(create it with `nbflows work-pool create {pool_name} --type process`)"
            ) from None
    for queue_name in queues or []:
        if not any(queue_name in {q["name"] for q in p.get("queues") or []} for p in found):
            have = sorted({q["name"] for p in found for q in p.get("queues") or []})
            raise NotFound(
                f"no work queue '{queue_name}' in {', '.join(names)}; queues: " + ", ".join(have)
            )
    return found


def serve_until_stopped(workers: list[BaseWorker]) -> None:
    """Serve until SIGTERM/SIGINT: the first stops claiming (runs get their grace), a second
    cancels the running runs at once."""

    def on_signal(signum: int, frame: FrameType | None) -> None:
        reason = f"the worker received {signal.Signals(signum).name}"
        for worker in workers:
            worker.stop(reason)

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        if len(workers) == 1:
            workers[0].serve()
            return
        errors: list[BaseException] = []

        def serve(worker: BaseWorker) -> None:
            try:
                worker.serve()
            except BaseException as exc:
                errors.append(exc)
                for other in workers:
                    other.stop(f"the {worker.type} worker failed: {exc}")

        threads = [
            threading.Thread(target=serve, args=(w,), name=f"nbflows-{w.type}-worker")
            for w in workers
        ]
        for thread in threads:
            thread.start()
        while any(t.is_alive() for t in threads):
            for thread in threads:
                thread.join(0.2)
        if errors:
            error = errors[0]
            if isinstance(error, NBFlowsError):
                raise error
            raise NBFlowsError(f"a worker failed: {type(error).__name__}: {error}") from error
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
