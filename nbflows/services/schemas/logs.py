"""A run's log lines as the API shows them: the reply model is the routes' response schema and
the serialiser."""

from __future__ import annotations

from typing import Any

from nbflows.services.schemas.flow_runs import FlowRunReply
from nbflows.services.schemas.reply import Reply, Timestamp
from nbflows.services.schemas.values import iso
from nbflows.store import tables as t


class LogLineReply(Reply):
    id: int
    flow_run_id: str
    timestamp: Timestamp | None
    level: int
    message: str
    cell_index: int | None
    source: str

    @classmethod
    def serialise(cls, line: t.LogLine) -> dict[str, Any]:
        return cls.build(
            id=line.id,
            flow_run_id=line.flow_run_id,
            timestamp=iso(line.timestamp),
            level=line.level,
            message=line.message,
            cell_index=line.cell_index,
            source=line.source,
        )


class LogsPageReply(Reply):
    items: list[LogLineReply]
    next_after: int
    flow_run: FlowRunReply
