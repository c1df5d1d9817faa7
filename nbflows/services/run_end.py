"""The end of a worker's attempt in one transaction: its last log lines, its executed notebook and
its end state, which would otherwise take three requests (and three transactions) per run.

Watchers rely on the order "logs, then the notebook, then the end state": in one transaction a
watcher that sees the end finds the rest there. Everything is refused (409) unless the worker
still holds the run under its fence, and the state change is checked before anything is kept:
the worker then reports the usual way, one part at a time, and learns which part was refused.
Sent again after a lost answer, it stores nothing twice (numbered lines are stored once, the
notebook is replaced, the same end state again is already recorded).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from nbflows.errors import InvalidInput
from nbflows.protocol import StateType, check_transition
from nbflows.results import ResultStore
from nbflows.services import flow_runs, logs
from nbflows.services.limits import Limits, executed_notebook_text
from nbflows.services.schemas.bodies import RunEnd
from nbflows.store import tables as t


def end_attempt(
    s: Session,
    run_id: str,
    req: RunEnd,
    notebook: dict[str, Any] | None,
    *,
    results: ResultStore,
    limits: Limits,
) -> t.FlowRun:
    """Record the end of the attempt `req.state.fence` of `req.state.worker` (see the module
    docstring); `notebook` is the request's notebook as sent (`req.notebook` checked it)."""
    state = req.state.as_report()
    assert state.worker is not None and state.fence is not None  # required by `EndState`
    try:
        proposed = StateType(state.type)
    except ValueError:
        valid = ", ".join(x.value for x in StateType)
        raise InvalidInput(f"unknown state '{state.type}'; valid states: {valid}") from None
    run = flow_runs.get_flow_run(s, run_id, lock=True)
    flow_runs.check_holder(run, state.worker, state.fence)
    if run.state_type != proposed.value:
        # Refused before anything is kept (the same report again is already recorded).
        check_transition(StateType(run.state_type), proposed, hand_back=True)
    if req.logs:
        logs.write_logs(s, run_id, req.logs, limits=limits)
    if notebook is not None:
        text = executed_notebook_text(notebook, limits)
        flow_runs.store_notebook(
            s, run_id, text, results=results, worker=state.worker, fence=state.fence
        )
    return flow_runs.set_state(s, run_id, state)
