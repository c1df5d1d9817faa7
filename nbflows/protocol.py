"""What the server, workers and kernels share: flow run states (and the one function that
decides which transitions are legal), the environment variables that tell a process where it
runs, and the MIME type of the events a headless kernel reports in its output."""

from __future__ import annotations

import os
from enum import Enum
from pathlib import Path

from nbflows.errors import Conflict


class StateType(str, Enum):
    SCHEDULED = "SCHEDULED"
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CRASHED = "CRASHED"
    CANCELLING = "CANCELLING"
    CANCELLED = "CANCELLED"
    PAUSED = "PAUSED"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL


TERMINAL = frozenset(
    {StateType.COMPLETED, StateType.FAILED, StateType.CRASHED, StateType.CANCELLED}
)

#: Display names a state type may carry; the first is the default.
STATE_NAMES: dict[StateType, tuple[str, ...]] = {
    StateType.SCHEDULED: ("Scheduled", "Late", "AwaitingRetry"),
    StateType.PENDING: ("Pending",),
    StateType.RUNNING: ("Running", "Retrying"),
    StateType.COMPLETED: ("Completed",),
    StateType.FAILED: ("Failed",),
    StateType.CRASHED: ("Crashed",),
    StateType.CANCELLING: ("Cancelling",),
    # Skipped: a missed scheduled run the deployment's catch-up policy does not run.
    StateType.CANCELLED: ("Cancelled", "Skipped"),
    StateType.PAUSED: ("Paused",),
}

S = StateType
_LEGAL: dict[StateType, frozenset[StateType]] = {
    # SCHEDULED -> SCHEDULED renames Scheduled to Late; -> PENDING is a claim;
    # -> RUNNING is an interactive run started in place.
    S.SCHEDULED: frozenset({S.SCHEDULED, S.PENDING, S.RUNNING, S.CANCELLED, S.CRASHED}),
    # PENDING -> SCHEDULED hands a claimed run back (worker shutting down before it started).
    S.PENDING: frozenset({S.SCHEDULED, S.RUNNING, S.FAILED, S.CRASHED, S.CANCELLING, S.CANCELLED}),
    S.RUNNING: frozenset({S.COMPLETED, S.FAILED, S.CRASHED, S.CANCELLING, S.CANCELLED, S.PAUSED}),
    S.PAUSED: frozenset({S.RUNNING, S.CANCELLING, S.CANCELLED, S.CRASHED}),
    S.CANCELLING: frozenset({S.CANCELLED, S.CRASHED}),
}


def default_name(state: StateType) -> str:
    return STATE_NAMES[state][0]


def check_transition(
    current: StateType,
    proposed: StateType,
    *,
    name: str | None = None,
    retry: bool = False,
    hand_back: bool = False,
) -> str:
    """Raise `Conflict` unless `current -> proposed` is legal; return the state name to store.

    A terminal run never changes again, except by an explicit retry (`retry=True`), which moves a
    FAILED or CRASHED run back to SCHEDULED/AwaitingRetry as a new attempt. The worker holding a
    RUNNING run may hand it back (`hand_back=True`): SCHEDULED again, the attempt not counted.
    """
    if (
        hand_back
        and current is S.RUNNING
        and proposed is S.SCHEDULED
        and name in (None, "Scheduled")
    ):
        return "Scheduled"
    state_name = name or default_name(proposed)
    if state_name not in STATE_NAMES[proposed]:
        valid = ", ".join(STATE_NAMES[proposed])
        raise Conflict(f"'{state_name}' is not a name of state {proposed.value}; valid: {valid}")
    if retry:
        if current in (S.FAILED, S.CRASHED) and proposed is S.SCHEDULED:
            return "AwaitingRetry" if name is None else state_name
        raise Conflict(f"only a FAILED or CRASHED run can be retried, not a {current.value} one")
    if current.is_terminal:
        raise Conflict(f"the run is {current.value} (terminal); it cannot become {proposed.value}")
    if proposed not in _LEGAL[current]:
        allowed = ", ".join(sorted(s.value for s in _LEGAL[current]))
        raise Conflict(
            f"a {current.value} run cannot become {proposed.value}; from {current.value}: {allowed}"
        )
    return state_name


#: The terminal states by value, for code that holds states as text (clients, workers).
TERMINAL_VALUES = frozenset(s.value for s in TERMINAL)

#: The store a server uses (and a kernel without a server records for): a SQLAlchemy URL.
DATABASE_URL_ENV = "NBFLOWS_DATABASE_URL"
#: The API root and token a client uses; the server exports them to the kernels it starts.
API_URL_ENV = "NBFLOWS_API_URL"
API_TOKEN_ENV = "NBFLOWS_API_TOKEN"
#: Set by a worker for the kernel it runs a flow in: such a kernel is headless.
FLOW_RUN_ID_ENV = "NBFLOWS_FLOW_RUN_ID"
FLOW_NAME_ENV = "NBFLOWS_FLOW_NAME"
#: "cell" for a cell-flow deployment, "notebook" for a whole-notebook one.
RUN_KIND_ENV = "NBFLOWS_RUN_KIND"
#: Jupyter's name of the notebook a kernel runs (its path under the server's root).
SESSION_NAME_ENV = "JPY_SESSION_NAME"

#: The entry point group of the workers: one entry point per work pool type (its name).
WORKERS_ENTRY_POINT_GROUP = "nbflows.workers"

#: Display data a headless kernel's `%%flow` cells publish; the worker relays each event.
EVENT_MIME_TYPE = "application/vnd.nbflows.event+json"


def default_database_url() -> str:
    """`NBFLOWS_DATABASE_URL`, else SQLite under the Jupyter data dir (the folder is not made)."""
    url = os.environ.get(DATABASE_URL_ENV)
    if url:
        return url
    from jupyter_core.paths import jupyter_data_dir

    return f"sqlite:///{Path(jupyter_data_dir()) / 'nbflows' / 'nbflows.db'}"
