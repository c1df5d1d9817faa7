"""A run's files in the result store (artifacts, exports) as the API shows them: the reply model
is the routes' response schema and the serialiser."""

from __future__ import annotations

from typing import Any

from nbflows.services.schemas.reply import Reply, Timestamp
from nbflows.services.schemas.values import iso


class RunFileReply(Reply):
    """A file of a run in the result store (an artifact, an export)."""

    name: str
    size: int
    sha256: str
    created: Timestamp | None

    @classmethod
    def serialise(cls, row: Any) -> dict[str, Any]:
        """`row`: a stored run file (`name`, `size`, `sha256`, `created`)."""
        return cls.build(name=row.name, size=row.size, sha256=row.sha256, created=iso(row.created))
