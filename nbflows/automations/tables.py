"""Storage of automations: the rules, and the outbox of their deliveries (imported by
`nbflows.store.tables`, so one metadata holds every table)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from nbflows.store.tables import Base, new_id, utcnow


class Automation(Base):
    """A rule: one trigger, a scope, and the actions to take when it fires."""

    __tablename__ = "automations"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    description: Mapped[str | None] = mapped_column(Text)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    #: "state" | "late" | "running_too_long" | "no_worker" (a column: the hooks select by it).
    trigger_kind: Mapped[str] = mapped_column(String(30))
    #: The whole trigger as given: {"kind", "states" | "after" (seconds)}.
    trigger: Mapped[dict[str, Any]] = mapped_column(JSON)
    #: Scope, resolved to ids at creation: deployment_id, flow_name, work_pool_id, tags.
    scope: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    #: Actions without their credentials (what the API may show, masked where needed).
    actions: Mapped[list[Any]] = mapped_column(JSON, default=list)
    #: Per action (same index), the values never shown back: an SMTP password, a webhook
    #: secret, an apprise URL with its tokens. Each value may be a `{{ secret.NAME }}`
    #: reference, resolved at delivery time (see `channels.resolve_secrets`).
    credentials: Mapped[list[Any]] = mapped_column(JSON, default=list)
    created: Mapped[datetime] = mapped_column(default=utcnow)
    updated: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    __table_args__ = (Index("ix_automations_kind", "trigger_kind", "enabled"),)


#: An event happens once per (rule, subject, condition): the outbox's unique key.
EVENT_KEY = ["automation_id", "event_key", "action_index"]


class AutomationDelivery(Base):
    """The outbox: one row per action of a fired rule, written in the transaction of the
    change that fired it (or by the scheduler pass that noticed the condition), then claimed
    and delivered by one server."""

    __tablename__ = "automation_deliveries"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    automation_id: Mapped[str] = mapped_column(ForeignKey("automations.id", ondelete="CASCADE"))
    #: What happened to what, e.g. `<run id>:<attempt>:FAILED`, `<pool id>:no_worker:<since>`.
    event_key: Mapped[str] = mapped_column(String(200))
    action_index: Mapped[int] = mapped_column(Integer, default=0)
    #: The event: "FAILED", "CRASHED", "COMPLETED", "CANCELLED", "late", "running_too_long",
    #: "no_worker".
    condition: Mapped[str] = mapped_column(String(30))
    flow_run_id: Mapped[str | None] = mapped_column(String(32))
    work_pool_id: Mapped[str | None] = mapped_column(String(32))
    #: The action's type and a masked description of its target (shown on the run).
    action_type: Mapped[str] = mapped_column(String(30))
    target: Mapped[str] = mapped_column(Text)
    #: "pending" (due at next_attempt), "sending" (claimed until lease_until), "delivered",
    #: "failed" (gave up, or the action cannot succeed).
    status: Mapped[str] = mapped_column(String(20), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt: Mapped[datetime] = mapped_column(default=utcnow)
    lease_until: Mapped[datetime | None] = mapped_column()
    claimed_by: Mapped[str | None] = mapped_column(String(200))
    last_error: Mapped[str | None] = mapped_column(Text)
    finished: Mapped[datetime | None] = mapped_column()
    created: Mapped[datetime] = mapped_column(default=utcnow)
    updated: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    __table_args__ = (
        Index("ux_deliveries_event", *EVENT_KEY, unique=True),
        # claim: due pending rows, and sending rows whose lease ran out
        Index("ix_deliveries_due", "status", "next_attempt"),
        Index("ix_deliveries_run", "flow_run_id", "created"),
        Index("ix_deliveries_automation", "automation_id", "created"),
    )
