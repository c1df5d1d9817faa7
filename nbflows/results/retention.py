"""Retention: which finished runs are removed, with their log lines, notebooks and artifacts.

A policy says "older than N days" and/or "keep the last N runs" (per deployment, or per flow
for interactive runs). The server has one (settings `retention_days`, `retention_keep_last`),
a deployment may have its own (which then applies to its runs instead); the scheduler applies
them, `nbflows flow-run prune` applies one on request. (Dead worker rows expire in the
scheduler pass: `heartbeats.settle_stuck_runs`.)
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, delete, func, literal, or_, select
from sqlalchemy.orm import Session

from nbflows.errors import InvalidInput
from nbflows.protocol import TERMINAL
from nbflows.store import tables as t

from . import run_files
from .store import ResultStore

#: Runs removed per scheduler pass at most (the next pass goes on).
BATCH = 500
_TERMINAL = [s.value for s in TERMINAL]


@dataclass(frozen=True)
class RetentionPolicy:
    older_than_days: float | None = None
    keep_last: int | None = None

    @property
    def prunes_runs(self) -> bool:
        return bool(self.older_than_days) or bool(self.keep_last)


def _group() -> Any:
    # Runs of a deployment are one group; interactive runs are grouped by flow name.
    return func.coalesce(t.FlowRun.deployment_id, literal("flow:") + t.FlowRun.flow_name)


def prunable_runs(
    s: Session,
    *,
    older_than_days: float | None,
    keep_last: int | None,
    deployment_id: str | None = None,
    exclude_own_policies: bool = False,
    now: datetime | None = None,
    limit: int | None = None,
) -> list[t.FlowRun]:
    """Finished runs the policy removes, oldest first."""
    if not older_than_days and not keep_last:
        raise InvalidInput("say what to remove: older_than_days and/or keep_last")
    where: list[ColumnElement[bool]] = [t.FlowRun.state_type.in_(_TERMINAL)]
    if deployment_id is not None:
        where.append(t.FlowRun.deployment_id == deployment_id)
    if exclude_own_policies:
        own = select(t.Deployment.id).where(
            or_(
                t.Deployment.retention_days.is_not(None),
                t.Deployment.retention_keep_last.is_not(None),
            )
        )
        where.append(or_(t.FlowRun.deployment_id.is_(None), t.FlowRun.deployment_id.not_in(own)))
    ranked = (
        select(
            t.FlowRun.id.label("id"),
            t.FlowRun.created.label("created"),
            func.row_number()
            .over(partition_by=_group(), order_by=t.FlowRun.created.desc())
            .label("rank"),
        )
        .where(and_(*where))
        .subquery()
    )
    keep: list[ColumnElement[bool]] = []
    if older_than_days:
        cutoff = (now or t.utcnow()) - timedelta(days=older_than_days)
        keep.append(ranked.c.created < cutoff.replace(tzinfo=None))
    if keep_last:
        keep.append(ranked.c.rank > keep_last)
    ids = select(ranked.c.id).where(and_(*keep)).order_by(ranked.c.created)
    if limit:
        ids = ids.limit(limit)
    found = list(s.scalars(ids))
    if not found:
        return []
    runs = s.scalars(select(t.FlowRun).where(t.FlowRun.id.in_(found)))
    return sorted(runs, key=lambda r: r.created)


def _size_columns() -> list[tuple[Any, Any]]:
    """(run id column, bytes column) of what a run keeps: its files in the result store, a
    notebook kept in the database before the store existed, its log text."""
    return [
        (t.RunFile.flow_run_id, t.RunFile.size),
        (t.FlowRunNotebook.flow_run_id, func.length(t.FlowRunNotebook.notebook)),
        (t.LogLine.flow_run_id, func.length(t.LogLine.message)),
    ]


def stored_sizes(s: Session, run_ids: list[str]) -> dict[str, int]:
    """Bytes kept per run (see `_size_columns`)."""
    sizes = dict.fromkeys(run_ids, 0)
    for run_id, size in _size_columns():
        query = select(run_id, func.sum(size)).where(run_id.in_(run_ids)).group_by(run_id)
        for found, total in s.execute(query):
            sizes[found] += int(total or 0)
    return sizes


def storage_summary(s: Session) -> dict[str, int]:
    """How many runs are kept, and how many bytes they keep in all."""
    runs = s.scalar(select(func.count()).select_from(t.FlowRun)) or 0
    size = sum(int(s.scalar(select(func.sum(col))) or 0) for _, col in _size_columns())
    return {"runs": int(runs), "bytes": size}


def delete_runs(s: Session, results: ResultStore, runs: list[t.FlowRun]) -> None:
    """Remove runs with everything they keep: files in the result store first (a failure
    leaves the run listed, to be removed again), then the rows (log lines, references and old
    database notebooks go with their run)."""
    for run in runs:
        run_files.delete_run_files(s, results, run.id)
    ids = [r.id for r in runs]
    for table in (t.LogLine, t.FlowRunNotebook):
        s.execute(delete(table).where(table.flow_run_id.in_(ids)))
    s.execute(delete(t.FlowRun).where(t.FlowRun.id.in_(ids)))


def apply_policies(s: Session, results: ResultStore, policy: RetentionPolicy) -> int:
    """One retention pass (the scheduler's): deployments' own policies, then the server's for
    every other run. Returns the number of runs removed."""
    removed = 0
    own = s.execute(
        select(
            t.Deployment.id, t.Deployment.retention_days, t.Deployment.retention_keep_last
        ).where(
            or_(
                t.Deployment.retention_days.is_not(None),
                t.Deployment.retention_keep_last.is_not(None),
            )
        )
    ).all()
    for dep_id, days, keep in own:
        runs = prunable_runs(
            s, older_than_days=days, keep_last=keep, deployment_id=dep_id, limit=BATCH - removed
        )
        delete_runs(s, results, runs)
        removed += len(runs)
        if removed >= BATCH:
            return removed
    if policy.prunes_runs:
        runs = prunable_runs(
            s,
            older_than_days=policy.older_than_days,
            keep_last=policy.keep_last,
            exclude_own_policies=True,
            limit=BATCH - removed,
        )
        delete_runs(s, results, runs)
        removed += len(runs)
    return removed


#: Runs a prune answer lists (it removes them all).
MAX_LISTED = 1000


def prune(
    s: Session,
    results: ResultStore,
    *,
    older_than_days: float | None,
    keep_last: int | None,
    deployment: str | None = None,
    dry_run: bool = False,
) -> dict[str, Any]:
    """Remove (or with `dry_run` only list) the finished runs a policy removes; what went, its
    sizes, and what is kept before and after."""
    from nbflows.services.deployments import get_deployment
    from nbflows.services.schemas.values import iso

    deployment_id = get_deployment(s, deployment).id if deployment else None
    before = storage_summary(s)
    runs = prunable_runs(
        s, older_than_days=older_than_days, keep_last=keep_last, deployment_id=deployment_id
    )
    sizes = stored_sizes(s, [r.id for r in runs])
    listed = [
        {
            "id": r.id,
            "name": r.name,
            "flow_name": r.flow_name,
            "state": r.state_type,
            "created": iso(r.created),
            "bytes": sizes[r.id],
        }
        for r in runs[:MAX_LISTED]
    ]
    removed_bytes = sum(sizes.values())
    if dry_run:
        after = {"runs": before["runs"] - len(runs), "bytes": before["bytes"] - removed_bytes}
    else:
        delete_runs(s, results, runs)
        s.flush()
        after = storage_summary(s)
    return {
        "dry_run": dry_run,
        "removed": len(runs),
        "removed_bytes": removed_bytes,
        "runs": listed,
        "before": before,
        "after": after,
    }
