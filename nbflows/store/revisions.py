"""The schema revision a store is at, and the newest one this nbflows knows, without Alembic.

A server starting on a store that is already at the newest revision (the usual start) need not
import Alembic (with Mako and Pygments: about 10 MiB and 130 modules kept for the server's life)
only to learn that there is nothing to do.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError

VERSIONS = Path(__file__).with_name("migrations") / "versions"


@cache
def head_revisions() -> frozenset[str]:
    """The revisions no other revision builds on (Alembic's heads), read from the migration
    files' `revision` and `down_revision` assignments."""
    revisions: set[str] = set()
    built_on: set[str] = set()
    for path in VERSIONS.glob("*.py"):
        for node in ast.parse(path.read_text()).body:
            if not isinstance(node, ast.Assign) or len(node.targets) != 1:
                continue
            target = node.targets[0]
            if not isinstance(target, ast.Name):
                continue
            value = ast.literal_eval(node.value)
            if target.id == "revision":
                revisions.add(value)
            elif target.id == "down_revision" and value is not None:
                built_on.update([value] if isinstance(value, str) else value)
    return frozenset(revisions - built_on)


def stored_revisions(connection: Connection) -> frozenset[str] | None:
    """The revisions recorded in the store (`alembic_version`); None when it has none yet."""
    try:
        rows = connection.exec_driver_sql("SELECT version_num FROM alembic_version").all()
    except DBAPIError:
        return None
    return frozenset(row[0] for row in rows)


def at_head(connection: Connection) -> bool:
    """Whether the store is at the newest revision this nbflows knows (nothing to migrate)."""
    return stored_revisions(connection) == head_revisions()
