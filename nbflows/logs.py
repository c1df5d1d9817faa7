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
    run = get_flow_run(s, run_id)
    deployment = s.get(t.Deployment, run.deployment_id) if run.deployment_id else None
    variables = {**(deployment.job_variables if deployment else {}), **run.job_variables}
    cap = int(variables.get("log_limit") or limit)
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
            }
        )
        run.logs_truncated = True
    if rows:
        s.execute(insert(t.LogLine), rows)
        run.log_count += len(accepted)
    return {"accepted": len(accepted), "truncated": run.logs_truncated}


def read_logs(s: Session, run_id: str, after: int = 0, limit: int = 1000) -> list[t.LogLine]:
    return list(
        s.scalars(
            select(t.LogLine)
            .where(t.LogLine.flow_run_id == run_id, t.LogLine.id > after)
            .order_by(t.LogLine.id)
            .limit(limit)
        )
    )
