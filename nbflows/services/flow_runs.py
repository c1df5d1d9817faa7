"""Flow runs: creation, queries, and every state change (through `nbflows.protocol`)."""

from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, select, text
from sqlalchemy.orm import Session

from nbflows.errors import Conflict, InvalidInput, NotFound
from nbflows.protocol import StateType, check_transition
from nbflows.results import ResultStore, exports, run_files
from nbflows.services import secrets as vault
from nbflows.services.schemas.bodies import InteractiveRunCreate, RunRequest, SetState
from nbflows.services.schemas.flow_runs import FlowRunReply
from nbflows.store import tables as t
from nbflows.store.db import begin_write
from nbflows.workers import job_templates, redaction

MAX_LIST = 1000


def run_name(flow_name: str) -> str:
    return f"{flow_name}-{secrets.token_hex(3)}"


def create_deployment_run(
    s: Session,
    deployment: t.Deployment,
    req: RunRequest,
    *,
    idempotency_key: str | None = None,
) -> tuple[t.FlowRun, bool]:
    """A SCHEDULED run of `deployment`; returns (run, created). Same idempotency key → same run."""
    from nbflows.notebooks.parameters import run_parameters, validate_parameters

    key = req.idempotency_key or idempotency_key
    if key:
        existing = _run_with_key(s, deployment.id, key)
        if existing is not None:
            return existing, False
    validate_parameters(deployment.parameter_schema, req.parameters)
    job_templates.check_job_variables(deployment.pool.base_job_template, req.job_variables)
    vault.check_references(s, req.parameters, req.job_variables)
    # A pipeline's run is a parent no worker claims (no pool): the scheduler pass runs its steps.
    pipeline = deployment.kind == "pipeline"
    run = t.FlowRun(
        name=run_name(deployment.flow_name),
        flow_name=deployment.flow_name,
        kind="pipeline" if pipeline else "deployment",
        deployment_id=deployment.id,
        deployment_version=deployment.version if pipeline else None,
        work_pool_id=None if pipeline else deployment.work_pool_id,
        work_queue_id=None if pipeline else deployment.work_queue_id,
        state_type=StateType.SCHEDULED.value,
        state_name="Scheduled",
        parameters=run_parameters(deployment.parameters, req.parameters),
        job_variables=req.job_variables,
        max_retries=deployment.retries,
        retry_delay=deployment.retry_delay,
        expected_start_time=req.scheduled_time or t.utcnow(),
        idempotency_key=key,
        tags=sorted({*deployment.tags, *req.tags}),
    )
    s.add(run)
    s.flush()
    return run, True


def _run_with_key(s: Session, deployment_id: str, key: str) -> t.FlowRun | None:
    """The deployment's run with this idempotency key, if there is one.

    Requests with the same key for the same deployment take turns from here to the end of their
    transactions, so a concurrent duplicate finds the run of the first instead of inserting one.
    """
    if s.get_bind().dialect.name == "postgresql":
        s.execute(
            text("SELECT pg_advisory_xact_lock(7262351, hashtext(:key))"),
            {"key": f"{deployment_id}:{key}"},
        )
    else:
        begin_write(s)
    return s.scalar(
        select(t.FlowRun).where(
            t.FlowRun.deployment_id == deployment_id, t.FlowRun.idempotency_key == key
        )
    )


def create_interactive_run(
    s: Session, req: InteractiveRunCreate, *, run_id: str | None = None
) -> t.FlowRun:
    """A `%%flow` run; `run_id` keeps the id a journal entry was given (see `store.local`)."""
    from nbflows.services.heartbeats import MISSED_BEATS

    now = t.utcnow()
    state = StateType(req.state)
    run = t.FlowRun(
        name=run_name(req.flow_name),
        flow_name=req.flow_name,
        kind="interactive",
        state_type=state.value,
        state_name=state.value.capitalize(),
        state_message=req.description,
        parameters=req.parameters,
        tags=req.tags,
        parent_run_id=req.parent_run_id,
        notebook_path=req.notebook_path,
        max_retries=req.max_retries,
        retry_delay=req.retry_delay,
        expected_start_time=now,
        start_time=now if state is StateType.RUNNING else None,
    )
    if run_id is not None:
        run.id = run_id
    if req.heartbeat_interval is not None:
        run.heartbeat_deadline = now + timedelta(seconds=MISSED_BEATS * req.heartbeat_interval)
    s.add(run)
    s.flush()
    return run


def get_flow_run(s: Session, run_id: str, *, lock: bool = False) -> t.FlowRun:
    """The run; with `lock`, held against concurrent changes until the transaction ends."""
    query = select(t.FlowRun).where(t.FlowRun.id == run_id)
    if lock:
        begin_write(s)
        if s.get_bind().dialect.name == "postgresql":
            query = query.with_for_update()
    run = s.scalar(query)
    if run is None:
        raise NotFound(f"no flow run with id '{run_id}'")
    return run


def list_flow_runs(
    s: Session,
    *,
    state: list[str] | None = None,
    deployment_id: str | None = None,
    flow_name: str | None = None,
    work_pool_name: str | None = None,
    parent_run_id: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> list[t.FlowRun]:
    if not 1 <= limit <= MAX_LIST:
        raise InvalidInput(f"limit must be between 1 and {MAX_LIST}, not {limit}")
    if offset < 0:
        raise InvalidInput(f"offset must be 0 or more, not {offset}")
    query = select(t.FlowRun).order_by(t.FlowRun.created.desc()).limit(limit).offset(offset)
    if state:
        valid = {x.value for x in StateType}
        unknown = [x for x in state if x not in valid]
        if unknown:
            raise InvalidInput(
                f"unknown state {', '.join(unknown)}; valid states: {', '.join(sorted(valid))}"
            )
        query = query.where(t.FlowRun.state_type.in_(state))
    if deployment_id:
        query = query.where(t.FlowRun.deployment_id == deployment_id)
    if flow_name:
        query = query.where(t.FlowRun.flow_name == flow_name)
    if parent_run_id:
        query = query.where(t.FlowRun.parent_run_id == parent_run_id)
    if work_pool_name:
        query = query.join(t.WorkPool, t.WorkPool.id == t.FlowRun.work_pool_id).where(
            t.WorkPool.name == work_pool_name
        )
    return list(s.scalars(query))


def set_state(s: Session, run_id: str, req: SetState) -> t.FlowRun:
    try:
        proposed = StateType(req.type)
    except ValueError:
        valid = ", ".join(x.value for x in StateType)
        raise InvalidInput(f"unknown state '{req.type}'; valid states: {valid}") from None
    run = get_flow_run(s, run_id, lock=True)
    if req.worker is not None:
        check_holder(run, req.worker, req.fence)
        if run.state_type == proposed.value and req.name in (None, run.state_name):
            # The same report again (its answer was lost, say): already recorded.
            return run
    transition(
        run,
        proposed,
        name=req.name,
        message=req.message,
        retry=req.retry,
        hand_back=req.worker is not None,
    )
    s.flush()
    return run


def check_holder(run: t.FlowRun, worker: str, fence: int | None) -> None:
    """Refuse (409) a report of `worker` unless it holds the run under fencing token `fence`:
    the results of an attempt are accepted from the claim that started it only."""
    if fence is None:
        raise InvalidInput(
            f"worker '{worker}' sent no fence: a worker's report must carry the fencing token "
            "its claim returned"
        )
    if run.worker_name != worker or run.fence != fence:
        holder = f"worker '{run.worker_name}'" if run.worker_name else "no worker"
        raise Conflict(
            f"worker '{worker}' no longer holds run '{run.id}' (fence {fence}; the run is "
            f"{run.state_type}, held by {holder} under fence {run.fence}); its report is refused"
        )


def transition(
    run: t.FlowRun,
    proposed: StateType,
    *,
    name: str | None = None,
    message: str | None = None,
    retry: bool = False,
    hand_back: bool = False,
) -> None:
    """Apply one state change to a loaded run: the only place that writes a run's state.

    `hand_back`: the holding worker gives a RUNNING run back (see `check_transition`)."""
    current = StateType(run.state_type)
    state_name = check_transition(current, proposed, name=name, retry=retry, hand_back=hand_back)
    now = t.utcnow()
    run.state_type = proposed.value
    run.state_name = state_name
    run.state_message = message
    run.state_timestamp = now
    if proposed is StateType.RUNNING and run.start_time is None:
        run.start_time = now
    if proposed.is_terminal:
        run.end_time = now
        run.heartbeat_deadline = None
    if retry:
        run.attempt += 1
        run.worker_name = None
        run.start_time = None
        run.end_time = None
        run.expected_start_time = now + timedelta(seconds=run.retry_delay)
    elif proposed is StateType.SCHEDULED and current in (StateType.PENDING, StateType.RUNNING):
        # Handed back: scheduled again for any worker, the attempt not counted.
        run.worker_name = None
        run.start_time = None
    retries_left = run.kind == "deployment" and run.attempt <= run.max_retries
    if proposed in (StateType.FAILED, StateType.CRASHED) and retries_left:
        transition(run, StateType.SCHEDULED, message=_retry_message(run, message), retry=True)
    elif proposed.is_terminal:
        # In the same transaction: the rules watching this state fire exactly when it commits.
        from nbflows.automations.triggers import run_changed_state

        run_changed_state(run)


def _retry_message(run: t.FlowRun, message: str | None) -> str:
    reason = f": {message.splitlines()[0]}" if message else ""
    return f"attempt {run.attempt} {run.state_type.lower()}{reason}; retrying"


def cancel(s: Session, run_id: str) -> t.FlowRun:
    """SCHEDULED runs are cancelled at once; claimed ones go CANCELLING for their worker."""
    run = get_flow_run(s, run_id, lock=True)
    current = StateType(run.state_type)
    if current is StateType.SCHEDULED:
        transition(run, StateType.CANCELLED, message="cancelled before it started")
    elif current in (StateType.PENDING, StateType.RUNNING, StateType.PAUSED):
        if run.kind == "interactive" or run.worker_name is None:
            transition(run, StateType.CANCELLED, message="cancelled")
        else:
            transition(run, StateType.CANCELLING, message="cancellation requested")
    elif current is not StateType.CANCELLING:
        check_transition(current, StateType.CANCELLING)  # raises the clear 409
    if run.kind == "pipeline":  # its steps' runs go with it (no further step starts)
        for child in list_flow_runs(s, parent_run_id=run.id, limit=MAX_LIST):
            if not StateType(child.state_type).is_terminal and child.state_type != "CANCELLING":
                cancel(s, child.id)
    s.flush()
    return run


def run_json(s: Session, run: t.FlowRun) -> dict[str, Any]:
    return runs_json(s, [run])[0]


def _template_of(pool: t.WorkPool | None) -> dict[str, Any]:
    """The template secrets are judged by; without a pool, the env-name rule alone applies."""
    if pool is None:
        return {"job_configuration": {}, "variables": {"type": "object", "properties": {}}}
    return pool.base_job_template


def runs_json(s: Session, runs: list[t.FlowRun]) -> list[dict[str, Any]]:
    """Many runs at once with three lookups, not three per run (list pages stay fast)."""
    if len(runs) == 1:
        return [_one_run_json(s, runs[0])]
    dep_ids = {r.deployment_id for r in runs if r.deployment_id}
    pool_ids = {r.work_pool_id for r in runs if r.work_pool_id}
    queue_ids = {r.work_queue_id for r in runs if r.work_queue_id}
    deps = (
        {
            d.id: f"{d.flow_name}/{d.name}"
            for d in s.scalars(select(t.Deployment).where(t.Deployment.id.in_(dep_ids)))
        }
        if dep_ids
        else {}
    )
    pools = (
        {p.id: p for p in s.scalars(select(t.WorkPool).where(t.WorkPool.id.in_(pool_ids)))}
        if pool_ids
        else {}
    )
    queues = (
        {q.id: q.name for q in s.scalars(select(t.WorkQueue).where(t.WorkQueue.id.in_(queue_ids)))}
        if queue_ids
        else {}
    )
    return [
        _run_json(
            r,
            deps.get(r.deployment_id or ""),
            pools.get(r.work_pool_id or ""),
            queues.get(r.work_queue_id or ""),
        )
        for r in runs
    ]


def _one_run_json(s: Session, r: t.FlowRun) -> dict[str, Any]:
    """One run's JSON: its deployment, pool and queue are often in the session already (the
    request that changed the run read them), where `Session.get` finds them without a query."""
    d = s.get(t.Deployment, r.deployment_id) if r.deployment_id else None
    pool = s.get(t.WorkPool, r.work_pool_id) if r.work_pool_id else None
    queue = s.get(t.WorkQueue, r.work_queue_id) if r.work_queue_id else None
    return _run_json(
        r, f"{d.flow_name}/{d.name}" if d else None, pool, queue.name if queue else None
    )


def _run_json(
    r: t.FlowRun, deployment_name: str | None, pool: t.WorkPool | None, queue_name: str | None
) -> dict[str, Any]:
    return FlowRunReply.serialise(
        r,
        deployment_name=deployment_name,
        pool_name=pool.name if pool else None,
        queue_name=queue_name,
        job_variables=(
            redaction.redact(r.job_variables, _template_of(pool)) if r.job_variables else None
        ),
    )


def store_notebook(
    s: Session,
    run_id: str,
    notebook: str,
    *,
    results: ResultStore,
    worker: str | None = None,
    fence: int | None = None,
) -> None:
    """Keep the executed notebook of a run in the result store; a worker's is refused unless
    it holds the run."""
    run = get_flow_run(s, run_id, lock=worker is not None)
    if worker is not None:
        check_holder(run, worker, fence)
    run_files.put_run_file(s, results, run_id, "notebook", run_files.NOTEBOOK, notebook.encode())
    exports.discard_exports(s, results, run_id)
    # A notebook kept in the database before the result store existed is replaced, not kept.
    s.execute(delete(t.FlowRunNotebook).where(t.FlowRunNotebook.flow_run_id == run_id))
    run.has_notebook = True


def read_notebook(s: Session, run_id: str, results: ResultStore) -> str:
    """The executed notebook's JSON text: from the result store, or for runs stored before it
    existed from the database (see migration 0007_storage)."""
    get_flow_run(s, run_id)
    ref = run_files.find_run_file(s, run_id, "notebook", run_files.NOTEBOOK)
    if ref is not None:
        return results.get(ref.key).decode("utf-8")
    row = s.get(t.FlowRunNotebook, run_id)
    if row is None:
        raise NotFound(f"flow run '{run_id}' has no executed notebook (yet)")
    return row.notebook


def record_output(
    s: Session, run_id: str, name: str, value: Any, *, max_size: int | None = None
) -> t.FlowRun:
    """Record output `name` of a run (a later value of the same name replaces it)."""
    from nbflows.outputs import MAX_OUTPUT_SIZE, check_output

    check_output(name, value, max_size or MAX_OUTPUT_SIZE)
    run = get_flow_run(s, run_id, lock=True)
    # A new dict: the JSON column notices a replaced value, not one changed in place.
    run.outputs = {**(run.outputs or {}), name: value}
    s.flush()
    return run
