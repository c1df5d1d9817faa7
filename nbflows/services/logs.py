"""Run log lines: written in batches, capped per run (the cut is said), read incrementally."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from nbflows.services.flow_runs import get_flow_run
from nbflows.services.limits import Limits, cut_line, run_output_note
from nbflows.services.schemas.bodies import LogIn
from nbflows.store import tables as t

DEFAULT_LOG_LIMIT = 10_000


def write_logs(
    s: Session,
    run_id: str,
    lines: list[LogIn],
    limit: int = DEFAULT_LOG_LIMIT,
    limits: Limits | None = None,
) -> dict[str, Any]:
    """Append `lines` to the run's log, within its caps: `log_limit` lines (see `_log_limit`),
    each line cut to `max_log_line` characters, and `max_run_output` characters in all. The
    first cap reached is said in one last line; later lines are dropped. Lines with a
    (fence, seq) already stored are skipped: a worker replaying its buffer after an outage
    stores nothing twice."""
    limits = limits or Limits()
    numbered = any(line.seq is not None for line in lines)
    # Numbered writes of one run are serialized, so two replays of a batch cannot both pass
    # the check below.
    run = get_flow_run(s, run_id, lock=numbered)
    if run.logs_truncated:
        return {"accepted": 0, "truncated": True}
    if numbered:
        lines = _unseen(s, run_id, lines)
    cap = _log_limit(s, run, limit)
    room = max(cap - run.log_count, 0)
    used = _output_used(s, run, len(lines), limits)
    now = t.utcnow()
    rows: list[dict[str, Any]] = []
    note = None
    for line in lines:
        if len(rows) >= room:
            note = f"log limit of {cap} lines reached; later lines of this run are dropped"
            break
        message = cut_line(line.message, limits)
        if used + len(message) > limits.max_run_output:
            note = run_output_note(limits)
            break
        used += len(message)
        rows.append(
            {
                "flow_run_id": run_id,
                "timestamp": line.timestamp or now,
                "level": line.level,
                "message": message,
                "cell_index": line.cell_index,
                "source": line.source,
                "fence": line.fence if line.seq is not None else None,
                "seq": line.seq,
            }
        )
    accepted = len(rows)
    if note is not None:
        rows.append(
            {
                "flow_run_id": run_id,
                "timestamp": now,
                "level": 30,
                "message": note,
                "cell_index": None,
                "source": "worker",
                "fence": None,
                "seq": None,
            }
        )
        run.logs_truncated = True
    if rows:
        s.execute(insert(t.LogLine), rows)
        run.log_count += accepted
    return {"accepted": accepted, "truncated": run.logs_truncated}


def _output_used(s: Session, run: t.FlowRun, adding: int, limits: Limits) -> int:
    """Characters of log text the run holds; 0 when even full lines could not reach the cap."""
    longest = limits.max_log_line + 200  # a cut line ends with a note of a few words
    if (run.log_count + adding + 1) * longest <= limits.max_run_output:
        return 0
    total = s.scalar(
        select(func.coalesce(func.sum(func.length(t.LogLine.message)), 0)).where(
            t.LogLine.flow_run_id == run.id
        )
    )
    return int(total or 0)


def _unseen(s: Session, run_id: str, lines: list[LogIn]) -> list[LogIn]:
    """`lines` without those whose (fence, seq) the run has already, or that repeat one."""
    keys = {(line.fence, line.seq) for line in lines if line.seq is not None}
    stored: set[tuple[int | None, int | None]] = set()
    for fence in {f for f, _ in keys}:
        seqs = [q for f, q in keys if f == fence]
        stored.update(
            s.execute(
                select(t.LogLine.fence, t.LogLine.seq).where(
                    t.LogLine.flow_run_id == run_id,
                    t.LogLine.fence.is_(None) if fence is None else t.LogLine.fence == fence,
                    t.LogLine.seq.between(min(seqs), max(seqs)),
                )
            ).all()
        )
    out = []
    for line in lines:
        if line.seq is not None:
            key = (line.fence, line.seq)
            if key in stored:
                continue
            stored.add(key)
        out.append(line)
    return out


def _log_limit(s: Session, run: t.FlowRun, default: int) -> int:
    """`log_limit` as the run's job would see it: pool default < deployment < run."""
    values: dict[str, Any] = {}
    pool = s.get(t.WorkPool, run.work_pool_id) if run.work_pool_id else None
    if pool is not None:
        spec = (
            pool.base_job_template.get("variables", {}).get("properties", {}).get("log_limit", {})
        )
        values["log_limit"] = spec.get("default")
        pinned = pool.base_job_template.get("job_configuration", {}).get("log_limit")
        if isinstance(pinned, int):
            return pinned
    deployment = s.get(t.Deployment, run.deployment_id) if run.deployment_id else None
    if deployment is not None:
        values.update({k: v for k, v in deployment.job_variables.items() if k == "log_limit"})
    values.update({k: v for k, v in run.job_variables.items() if k == "log_limit"})
    return int(values.get("log_limit") or default)


def read_logs(s: Session, run_id: str, after: int = 0, limit: int = 1000) -> list[t.LogLine]:
    return list(
        s.scalars(
            select(t.LogLine)
            .where(t.LogLine.flow_run_id == run_id, t.LogLine.id > after)
            .order_by(t.LogLine.id)
            .limit(limit)
        )
    )
