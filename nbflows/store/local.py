"""Recording runs without a server (plain IPython, VS Code): straight into the local store.

The store is the one a server on this machine would use (`NBFLOWS_DATABASE_URL` or the SQLite file
under the Jupyter data dir), so these runs appear once a server starts.
"""

from __future__ import annotations

import functools
from datetime import datetime
from typing import Any

from nbflows.schemas import InteractiveRunCreate, LogIn
from nbflows.states import StateType

from .db import Database


@functools.lru_cache(maxsize=1)
def local_database() -> Database:
    return Database()


def record_flow_run(run: dict[str, Any], logs: list[dict[str, Any]] | None = None) -> str:
    """Store one finished (or running) interactive run and its log lines; return its id.

    `run`: flow_name, state (a StateType value), optional message, parameters, tags,
    parent_run_id, notebook_path, outputs, start_time, end_time (datetimes or ISO strings).
    """
    from nbflows import flow_runs
    from nbflows import logs as run_logs

    with local_database().session() as s:
        created = flow_runs.create_interactive_run(
            s,
            InteractiveRunCreate(
                flow_name=run["flow_name"],
                parameters=run.get("parameters") or {},
                tags=run.get("tags") or [],
                parent_run_id=run.get("parent_run_id"),
                notebook_path=run.get("notebook_path"),
            ),
        )
        if run.get("outputs"):
            created.outputs = dict(run["outputs"])
        if run.get("start_time"):
            created.start_time = _when(run["start_time"])
        state = StateType(run.get("state", StateType.COMPLETED.value))
        if state is not StateType.RUNNING:
            flow_runs.transition(created, state, message=run.get("message"))
            if run.get("end_time"):
                created.end_time = _when(run["end_time"])
        if logs:
            s.flush()
            run_logs.write_logs(s, created.id, [LogIn.model_validate(x) for x in logs])
        return created.id


def _when(value: datetime | str) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(value)
