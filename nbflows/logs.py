"""Run log lines: written in batches, capped per run (the cut is said), read incrementally."""

from __future__ import annotations

from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from .flow_runs import get_flow_run
from .schemas import LogIn
from .store import tables as t

DEFAULT_LOG_LIMIT = 10_000
MAX_MESSAGE = 64 * 1024


def write_logs(
    s: Session, run_id: str, lines: list[LogIn], limit: int = DEFAULT_LOG_LIMIT
) -> dict[str, Any]:
    """Append lines to a run's log. Lines with a (fence, seq) already stored are skipped: a
    worker replaying its buffer after an outage stores nothing twice."""
    numbered = any(line.seq is not None for line in lines)
    # Numbered writes of one run are serialized, so two replays of a batch cannot both pass
    # the check below.
    run = get_flow_run(s, run_id, lock=numbered)
    if numbered:
        lines = _unseen(s, run_id, lines)
    cap = _log_limit(s, run, limit)
    room = max(cap - run.log_count, 0)
    accepted = lines[:room]
    now = t.utcnow()
    rows = [
        {
            "flow_run_id": run_id,
            "timestamp": line.timestamp or now,
            "level": line.level,
            "message": line.message[:MAX_MESSAGE],
            "cell_index": line.cell_index,
            "source": line.source,
            "fence": line.fence if line.seq is not None else None,
            "seq": line.seq,
        }
        for line in accepted
    ]
    truncated = len(lines) > room
    if truncated and not run.logs_truncated:
        rows.append(
            {
                "flow_run_id": run_id,
                "timestamp": now,
                "level": 30,
                "message": f"log limit of {cap} lines reached; later lines of this run are dropped",
                "cell_index": None,
                "source": "worker",
                "fence": None,
                "seq": None,
            }
        )
        run.logs_truncated = True
    if rows:
        s.execute(insert(t.LogLine), rows)
        run.log_count += len(accepted)
    return {"accepted": len(accepted), "truncated": run.logs_truncated}


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
