"""The outbox of deliveries: claimed like runs (one server delivers each row), retried with
exponential backoff, and recorded where the run's page shows them."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session

from nbflows.automations.tables import Automation, AutomationDelivery
from nbflows.errors import NotFound
from nbflows.services.schemas.values import iso
from nbflows.store import tables as t

D = AutomationDelivery
#: A claimed delivery not recorded within this time (its server died) is claimed again.
LEASE = timedelta(minutes=2)


def backoff(attempts: int, first: float, cap: float = 3600.0) -> timedelta:
    """Seconds before the next attempt after `attempts` failed ones: first, twice that, four times, ... capped."""
    return timedelta(seconds=min(first * 2 ** max(attempts - 1, 0), cap))


def claim_due(
    s: Session, server: str, limit: int = 10, now: datetime | None = None
) -> list[tuple[str, int]]:
    """Claim up to `limit` due deliveries for `server`: (id, attempt number) of each.

    Atomic per row, as run claims are: on PostgreSQL rows another server is claiming are
    skipped (FOR UPDATE SKIP LOCKED); on SQLite each row changes only if it is still as read
    (the row count says whether this server won it)."""
    now = now or t.utcnow()
    due = or_(
        and_(D.status == "pending", D.next_attempt <= now),
        and_(D.status == "sending", D.lease_until < now),
    )
    query = select(D.id, D.status, D.attempts).where(due).order_by(D.next_attempt).limit(limit)
    if s.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    claimed = []
    for row_id, status, attempts in s.execute(query).all():
        result = s.execute(
            update(D)
            .where(D.id == row_id, D.status == status, D.attempts == attempts)
            .values(
                status="sending",
                attempts=attempts + 1,
                lease_until=now + LEASE,
                claimed_by=server,
                updated=now,
            )
            .returning(D.id)
        )
        if result.first() is not None:
            claimed.append((row_id, attempts + 1))
    return claimed


def record(
    s: Session,
    delivery_id: str,
    attempt: int,
    error: str | None,
    *,
    retry_delay: float,
    max_attempts: int,
    final: bool = False,
) -> bool:
    """Record how attempt `attempt` went; False when this claim no longer holds the row
    (its lease ran out and another server took it: that one records)."""
    now = t.utcnow()
    held = and_(D.id == delivery_id, D.status == "sending", D.attempts == attempt)
    if error is None:
        values: dict[str, Any] = {"status": "delivered", "finished": now, "last_error": None}
    elif final or attempt >= max_attempts:
        values = {"status": "failed", "finished": now, "last_error": error[:2000]}
    else:
        values = {
            "status": "pending",
            "next_attempt": now + backoff(attempt, retry_delay),
            "last_error": error[:2000],
        }
    result = s.execute(
        update(D).where(held).values(lease_until=None, updated=now, **values).returning(D.id)
    )
    return result.first() is not None


def next_due(s: Session) -> datetime | None:
    """When the next pending delivery falls due (None: nothing pending)."""
    return s.scalar(select(D.next_attempt).where(D.status == "pending").order_by(D.next_attempt))


def deliveries_of_run(s: Session, run_id: str) -> list[dict[str, Any]]:
    """What the run's automations did, oldest first: 'notified <target> at <time>: delivered /
    failed, why'."""
    if s.get(t.FlowRun, run_id) is None:
        raise NotFound(f"no flow run with id '{run_id}'")
    rows = s.execute(
        select(D, Automation.name)
        .join(Automation, Automation.id == D.automation_id, isouter=True)
        .where(D.flow_run_id == run_id)
        .order_by(D.created, D.action_index)
    ).all()
    return [delivery_json(d, name) for d, name in rows]


def deliveries_of_automation(s: Session, automation_id: str, limit: int = 50) -> list[Any]:
    rows = s.execute(
        select(D, Automation.name)
        .join(Automation, Automation.id == D.automation_id)
        .where(D.automation_id == automation_id)
        .order_by(D.created.desc())
        .limit(limit)
    ).all()
    return [delivery_json(d, name) for d, name in rows]


def delivery_json(d: AutomationDelivery, automation_name: str | None) -> dict[str, Any]:
    return {
        "id": d.id,
        "automation_id": d.automation_id,
        "automation_name": automation_name,
        "condition": d.condition,
        "flow_run_id": d.flow_run_id,
        "work_pool_id": d.work_pool_id,
        "action_type": d.action_type,
        "target": d.target,
        "status": d.status,
        "attempts": d.attempts,
        "next_attempt": iso(d.next_attempt) if d.status == "pending" else None,
        "last_error": d.last_error,
        "finished": iso(d.finished),
        "created": iso(d.created),
    }
