"""Heartbeats of workers and kernels, and the detector that gives every non-terminal run a way out.

A worker beats for each pool it serves, listing the runs it executes (with their fencing
tokens); the runs it holds stay its own while it beats. Each beat answers which runs it must
stop (cancelled, or not its own any more), and settles runs held under its name that it does
not list (a previous process of the name left them, or a claim's answer never reached it).
A kernel beats for its `%%flow` runs. `settle_stuck_runs` (each scheduler pass) ends what
nobody is left to end:

* runs of a worker silent for `MISSED_BEATS` intervals (and at least `MIN_SILENCE` seconds):
  PENDING ones are handed back (they never started: a worker needs the server's answer, with its
  fencing token, to start one), RUNNING ones CRASH (retried if the run has retries left),
  CANCELLING ones are CANCELLED;
* runs claimed by a worker that never beat at all, the same once `MISSED_BEATS` default
  intervals have passed;
* `%%flow` runs whose kernel stopped beating: CRASHED;
* CANCELLING runs whose worker never confirms: CANCELLED after `CANCELLING_TIMEOUT`;
* worker rows offline for `OFFLINE_WORKER_TTL`: deleted.

After the server (re)starts nobody could beat while it was away, so silence is counted from the
start at the earliest, plus `RESTART_GRACE` for the workers to find it again: an outage crashes
nothing that is still running.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, func, or_, select
from sqlalchemy.orm import Session

from nbflows.protocol import TERMINAL, StateType
from nbflows.services.flow_runs import get_flow_run, transition
from nbflows.services.schemas.bodies import HeartbeatRequest
from nbflows.services.schemas.pools import WorkerReply
from nbflows.services.work_pools import ACTIVE_STATES, get_work_pool
from nbflows.store import tables as t

#: Seconds between a worker's heartbeats unless it says otherwise.
DEFAULT_INTERVAL = 5.0
#: A worker or kernel silent for this many of its intervals is lost.
MISSED_BEATS = 3
#: ... and a worker never before this many seconds of silence, however short its interval: on a
#: loaded machine a live worker's beats can stall for seconds, and a crash verdict on a live
#: worker's run starts a retry while the first attempt still runs.
MIN_SILENCE = 10.0
#: Seconds workers get, after a server (re)start, to reach it before any crash verdict.
RESTART_GRACE = 10.0
#: A PENDING run its (beating) worker does not list is handed back after this many seconds:
#: the claim's answer never reached the worker (the server died as it answered, say).
UNKNOWN_CLAIM_TIMEOUT = 15.0
#: Seconds a CANCELLING run waits for its worker to confirm before it is CANCELLED anyway.
CANCELLING_TIMEOUT = 120.0
#: Worker rows offline for this many seconds are deleted (their runs were settled long before).
OFFLINE_WORKER_TTL = 3600.0

_TERMINAL = [x.value for x in TERMINAL]
#: When this server process started: silence before it is nobody's fault.
_started = t.utcnow()


def server_started() -> datetime:
    return _started


def heartbeat(s: Session, pool_name: str, req: HeartbeatRequest) -> dict[str, Any]:
    """Record a worker's beat; answer which runs it must stop (cancelled, or not its own)."""
    pool = get_work_pool(s, pool_name)
    now = t.utcnow()
    worker = s.get(t.Worker, (pool.id, req.name))
    if worker is None:
        worker = t.Worker(work_pool_id=pool.id, name=req.name)
        s.add(worker)
    interval = req.heartbeat_interval or DEFAULT_INTERVAL
    worker.last_heartbeat = now
    worker.heartbeat_interval = interval
    worker.online_until = now + silence_window(interval)
    worker.limit = req.limit
    worker.problem = req.problem
    s.flush()  # the write lock first (SQLite): what follows reads the latest states
    cancel = set(
        s.scalars(
            select(t.FlowRun.id).where(
                t.FlowRun.worker_name == req.name,
                t.FlowRun.work_pool_id == pool.id,
                t.FlowRun.state_type == StateType.CANCELLING.value,
            )
        )
    )
    if req.running:
        cancel |= _not_held(s, req)
    settled = _settle_unknown_runs(s, pool.id, req, now, interval)
    return {"cancel": sorted(cancel), "heartbeat_interval": interval, "settled": settled}


def _not_held(s: Session, req: HeartbeatRequest) -> set[str]:
    """Runs the worker executes but must stop: cancelled, or no longer its own (crashed while
    it was cut off and retried, perhaps elsewhere, or claimed anew under another fence)."""
    found = set()
    for run_id, state, holder, fence in s.execute(
        select(t.FlowRun.id, t.FlowRun.state_type, t.FlowRun.worker_name, t.FlowRun.fence).where(
            t.FlowRun.id.in_(req.running)
        )
    ):
        if state == StateType.CANCELLED.value:
            found.add(run_id)  # cancelled without the worker's confirmation: it must stop
        elif state in _TERMINAL:
            continue  # the worker is only reporting its end
        elif holder != req.name or req.fences.get(run_id, fence) != fence:
            found.add(run_id)
    return found


def _settle_unknown_runs(
    s: Session, pool_id: str, req: HeartbeatRequest, now: datetime, interval: float
) -> list[str]:
    """Runs held under this worker's name that it does not list: a previous process of the
    name left them (RUNNING → CRASHED, retried if allowed), or the claim's answer never reached
    the worker (PENDING → handed back). CANCELLING ones are CANCELLED. Runs changed in the
    last `UNKNOWN_CLAIM_TIMEOUT` seconds are left alone: the worker may not know them yet."""
    cutoff = now - timedelta(seconds=max(UNKNOWN_CLAIM_TIMEOUT, MISSED_BEATS * interval))
    query = select(t.FlowRun).where(
        t.FlowRun.worker_name == req.name,
        t.FlowRun.work_pool_id == pool_id,
        t.FlowRun.state_type.in_([*ACTIVE_STATES, StateType.PAUSED.value]),
        t.FlowRun.state_timestamp < cutoff,
    )
    if req.running:
        query = query.where(t.FlowRun.id.not_in(req.running))
    if s.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    runs = list(s.scalars(query))
    for run in runs:
        state = StateType(run.state_type)
        if state is StateType.PENDING:
            transition(
                run,
                StateType.SCHEDULED,
                message=f"handed back: worker '{req.name}' never received its claim",
            )
            continue
        end = StateType.CANCELLED if state is StateType.CANCELLING else StateType.CRASHED
        transition(
            run,
            end,
            message=f"worker '{req.name}' does not run it any more (it restarted while the run "
            "was active)",
        )
        _end_children(s, [run.id], end)
    return [r.id for r in runs]


def beat_flow_run(s: Session, run_id: str, interval: float) -> dict[str, Any]:
    """A kernel's beat for one of its `%%flow` runs: it stays alive `MISSED_BEATS` intervals."""
    run = get_flow_run(s, run_id)
    if not StateType(run.state_type).is_terminal:
        run.heartbeat_deadline = t.utcnow() + timedelta(seconds=MISSED_BEATS * interval)
    return {"id": run.id, "state": {"type": run.state_type, "name": run.state_name}}


def list_workers(s: Session, pool_name: str) -> list[dict[str, Any]]:
    pool = get_work_pool(s, pool_name)
    now = t.utcnow()
    running = dict(
        s.execute(
            select(t.FlowRun.worker_name, func.count())
            .where(t.FlowRun.work_pool_id == pool.id, t.FlowRun.state_type.in_(ACTIVE_STATES))
            .group_by(t.FlowRun.worker_name)
        ).all()
    )
    out = []
    for w in s.scalars(
        select(t.Worker).where(t.Worker.work_pool_id == pool.id).order_by(t.Worker.name)
    ):
        online = w.online_until is not None and w.online_until > now
        out.append(
            WorkerReply.serialise(w, pool.name, online=online, running=running.get(w.name, 0))
        )
    return out


# -- the detector ---------------------------------------------------------------------------------


def settle_stuck_runs(s: Session, worker_ttl: float = OFFLINE_WORKER_TTL) -> set[str]:
    """One pass of the detector (see the module docstring); returns the ids of the pools whose
    claimable runs changed. Worker rows offline for `worker_ttl` seconds are deleted (0: kept)."""
    now = t.utcnow()
    changed: set[str] = set()
    for run in [
        *_runs_of_lost_workers(s, now),
        *_runs_of_silent_kernels(s, now),
        *_unconfirmed_cancellations(s, now),
    ]:
        if run.work_pool_id:
            changed.add(run.work_pool_id)
    if worker_ttl > 0:
        expired = t.Worker.online_until < now - timedelta(seconds=worker_ttl)
        s.execute(delete(t.Worker).where(expired))
    return changed


def silence_window(interval: float) -> timedelta:
    """How long a worker beating every `interval` seconds may be silent and still be alive."""
    return timedelta(seconds=max(MISSED_BEATS * interval, MIN_SILENCE))


def _grace_over(now: datetime, silent_since: datetime | None, interval: float) -> bool:
    """Whether a worker silent since `silent_since` has missed its beats, counting no silence
    from before this server started and giving `RESTART_GRACE` after a start."""
    window = silence_window(interval)
    if silent_since is not None and silent_since >= _started:
        return now > silent_since + window
    return now > _started + window + timedelta(seconds=RESTART_GRACE)


def _locked(s: Session, query: Any) -> Any:
    if s.get_bind().dialect.name == "postgresql":  # not under a concurrent state change
        return query.with_for_update(skip_locked=True, of=t.FlowRun)
    return query


def _runs_of_lost_workers(s: Session, now: datetime) -> list[t.FlowRun]:
    # Driven by the few active runs, joined to their worker's row by primary key: as cheap with
    # 5,000 dead worker rows as with none.
    unclaimed_for = timedelta(seconds=MISSED_BEATS * DEFAULT_INTERVAL)
    query = (
        select(t.FlowRun, t.Worker.last_heartbeat, t.Worker.heartbeat_interval)
        .outerjoin(
            t.Worker,
            and_(
                t.Worker.work_pool_id == t.FlowRun.work_pool_id,
                t.Worker.name == t.FlowRun.worker_name,
            ),
        )
        .where(
            t.FlowRun.state_type.in_([*ACTIVE_STATES, StateType.PAUSED.value]),
            t.FlowRun.worker_name.is_not(None),
            or_(
                t.Worker.online_until < now,
                and_(t.Worker.name.is_(None), t.FlowRun.state_timestamp < now - unclaimed_for),
            ),
        )
    )
    settled = []
    for run, last_beat, interval in s.execute(_locked(s, query)).all():
        if last_beat is None:  # claimed, then never a beat: silent since the claim
            last_beat, interval = run.state_timestamp, DEFAULT_INTERVAL
        if not _grace_over(now, last_beat, interval):
            continue
        silence = f"last heartbeat {(now - last_beat).total_seconds():.0f} s ago"
        if last_beat < _started:
            silence = "no heartbeat since the server started"
        worker = run.worker_name
        state = StateType(run.state_type)
        if state is StateType.PENDING:
            transition(
                run,
                StateType.SCHEDULED,
                message=f"handed back: worker '{worker}' stopped heartbeating before it started "
                f"the run ({silence})",
            )
        else:
            end = StateType.CANCELLED if state is StateType.CANCELLING else StateType.CRASHED
            transition(run, end, message=f"worker '{worker}' stopped heartbeating ({silence})")
            _end_children(s, [run.id], end)
        settled.append(run)
    return settled


def _runs_of_silent_kernels(s: Session, now: datetime) -> list[t.FlowRun]:
    query = select(t.FlowRun).where(
        t.FlowRun.heartbeat_deadline < now, t.FlowRun.state_type.not_in(_TERMINAL)
    )
    window = timedelta(seconds=MISSED_BEATS * DEFAULT_INTERVAL)  # kernels beat at the default
    settled = []
    for run in s.scalars(_locked(s, query)).all():
        assert run.heartbeat_deadline is not None
        if not _grace_over(now, run.heartbeat_deadline - window, DEFAULT_INTERVAL):
            continue
        end = StateType.CANCELLED if run.state_type == "CANCELLING" else StateType.CRASHED
        transition(
            run,
            end,
            message="the kernel running the flow stopped heartbeating (it was stopped, killed or "
            "lost its connection to the server)",
        )
        _end_children(s, [run.id], end)
        settled.append(run)
    return settled


def _unconfirmed_cancellations(s: Session, now: datetime) -> list[t.FlowRun]:
    cutoff = now - timedelta(seconds=CANCELLING_TIMEOUT)
    if not _grace_over(now, None, DEFAULT_INTERVAL):
        return []  # its worker may still be looking for the restarted server
    query = select(t.FlowRun).where(
        t.FlowRun.state_type == StateType.CANCELLING.value, t.FlowRun.state_timestamp < cutoff
    )
    settled = []
    for run in s.scalars(_locked(s, query)).all():
        transition(
            run,
            StateType.CANCELLED,
            message=f"worker '{run.worker_name}' did not confirm the cancellation within "
            f"{CANCELLING_TIMEOUT:g} s",
        )
        _end_children(s, [run.id], StateType.CANCELLED)
        settled.append(run)
    return settled


def _end_children(s: Session, parent_ids: Iterable[str], end: StateType) -> None:
    """`%%flow` runs of a notebook run that ended without them: they end with it."""
    parents = list(parent_ids)
    while parents:
        children = list(
            s.scalars(
                select(t.FlowRun).where(
                    t.FlowRun.parent_run_id.in_(parents), t.FlowRun.state_type.not_in(_TERMINAL)
                )
            )
        )
        for child in children:
            state = end if child.state_type != "CANCELLING" else StateType.CANCELLED
            transition(child, state, message=f"its parent run ended {end.value}")
        parents = [c.id for c in children]
