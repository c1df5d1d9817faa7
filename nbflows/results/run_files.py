"""The files of a run in the result store, and their references in the database.

Keys: `runs/<run id>/notebook.ipynb`, `runs/<run id>/exports/<name>`,
`runs/<run id>/artifacts/<name>`; everything of a run sits under `runs/<run id>/`, so deleting
a run's files is one prefix. Functions take a session (they run on the orchestrator's threads)
and the `ResultStore`.
"""

from __future__ import annotations

import re
from typing import Literal

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from nbflows.errors import InvalidInput, NotFound
from nbflows.store import tables as t

from .store import ResultStore

FileKind = Literal["notebook", "export", "artifact"]
NOTEBOOK = "notebook.ipynb"
#: Longest artifact name (a relative path under the run's output folder).
MAX_NAME = 500
_BAD_NAME = re.compile(r"[\x00-\x1f\x7f\\]")


def run_prefix(run_id: str) -> str:
    return f"runs/{run_id}"


def file_key(run_id: str, kind: FileKind, name: str) -> str:
    if kind == "notebook":
        return f"{run_prefix(run_id)}/{NOTEBOOK}"
    return f"{run_prefix(run_id)}/{kind}s/{name}"


def check_artifact_name(name: str) -> str:
    """`name` if it is a relative POSIX path inside the output folder; InvalidInput if not."""
    parts = name.split("/")
    if (
        not name
        or len(name) > MAX_NAME
        or name.startswith("/")
        or any(p in ("", ".", "..") for p in parts)
        or _BAD_NAME.search(name)
    ):
        raise InvalidInput(
            f"artifact name {name[:80]!r} is not valid: give a relative path inside the run's "
            f"output folder (parts separated by '/', no '.', '..', backslashes or control "
            f"characters, at most {MAX_NAME} characters)"
        )
    return name


def put_run_file(
    s: Session, results: ResultStore, run_id: str, kind: FileKind, name: str, data: bytes
) -> t.RunFile:
    """Store `data` as a file of the run and keep its reference (replacing one of that name)."""
    stored = results.put(file_key(run_id, kind, name), data)
    row = s.get(t.RunFile, (run_id, kind, name))
    if row is None:
        row = t.RunFile(flow_run_id=run_id, kind=kind, name=name)
        s.add(row)
    row.key, row.size, row.sha256 = stored.key, stored.size, stored.sha256
    row.created = t.utcnow()
    s.flush()  # found by the reads that follow in the same transaction (exports)
    return row


def find_run_file(s: Session, run_id: str, kind: FileKind, name: str) -> t.RunFile | None:
    return s.get(t.RunFile, (run_id, kind, name))


def read_run_file(
    s: Session, results: ResultStore, run_id: str, kind: FileKind, name: str
) -> tuple[t.RunFile, bytes]:
    row = find_run_file(s, run_id, kind, name)
    if row is None:
        raise NotFound(f"flow run '{run_id}' has no {kind} '{name}'")
    return row, results.get(row.key)


def list_run_files(s: Session, run_id: str, kind: FileKind) -> list[t.RunFile]:
    query = select(t.RunFile).where(t.RunFile.flow_run_id == run_id, t.RunFile.kind == kind)
    return list(s.scalars(query.order_by(t.RunFile.name)))


def total_size(s: Session, run_id: str, kind: FileKind) -> int:
    query = select(func.coalesce(func.sum(t.RunFile.size), 0)).where(
        t.RunFile.flow_run_id == run_id, t.RunFile.kind == kind
    )
    return int(s.scalar(query) or 0)


def delete_run_files(s: Session, results: ResultStore, run_id: str) -> None:
    """Remove every stored file of the run and their references."""
    results.delete(run_prefix(run_id))
    s.execute(delete(t.RunFile).where(t.RunFile.flow_run_id == run_id))
