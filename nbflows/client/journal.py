"""The local journal: flow runs recorded by a kernel that found no server.

A kernel never opens or migrates the store. Without a server it appends each finished
interactive run, with its log lines, as one JSON line to `journal.jsonl` under the Jupyter data
dir (the folder of the default SQLite store); the next server to start imports the journal into
its store (`nbflows.store.local.import_journal`) and empties it. Each entry carries the run's id,
so an import that is interrupted and run again adds nothing twice. Each entry also names (by a
digest) the store it is meant for, the one a server started here would use
(`nbflows.protocol.default_database_url`); a server imports only the entries meant for its store.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

JOURNAL_NAME = "journal.jsonl"


def journal_path() -> Path:
    """`<jupyter data dir>/nbflows/journal.jsonl` (`JUPYTER_DATA_DIR` moves it)."""
    from jupyter_core.paths import jupyter_data_dir

    return Path(jupyter_data_dir()) / "nbflows" / JOURNAL_NAME


def store_key(database_url: str | None = None) -> str:
    """A digest naming the store (never the URL itself: it may hold a password)."""
    from nbflows.protocol import default_database_url

    url = database_url or default_database_url()
    return hashlib.sha256(url.encode()).hexdigest()[:16]


def append_run(
    run: dict[str, Any], logs: list[dict[str, Any]] | None = None, *, path: Path | None = None
) -> str:
    """Append one run (the fields of `InteractiveRunCreate`, plus state, message, start_time,
    end_time) and its log lines; return the id the run will have in the store."""
    run_id = uuid.uuid4().hex  # the store's id format
    entry = {"id": run_id, "store": store_key(), "recorded": _now(), "run": run, "logs": logs or []}
    append_lines([json.dumps(entry, default=str)], path)
    return run_id


def append_lines(lines: list[str], path: Path | None = None) -> None:
    """Append whole journal lines (each one JSON entry)."""
    target = path or journal_path()
    target.parent.mkdir(parents=True, exist_ok=True)
    data = "".join(line + "\n" for line in lines).encode()
    # One write on an O_APPEND descriptor: kernels appending at once do not interleave lines.
    fd = os.open(target, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def read_entries(path: Path | None = None) -> Iterator[dict[str, Any]]:
    """The journal's entries, oldest first; a torn last line (a kernel killed mid-write) is
    skipped."""
    target = path or journal_path()
    try:
        text = target.read_text(encoding="utf-8")
    except FileNotFoundError:
        return
    for line in text.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and isinstance(entry.get("run"), dict):
            yield entry


def recent_runs(flow_name: str, limit: int, path: Path | None = None) -> list[dict[str, Any]]:
    """The newest `limit` journal runs of `flow_name`, newest first, shaped like the API's runs
    (the fields a run has before a server stores it)."""
    runs = [_run_json(e) for e in read_entries(path) if e["run"].get("flow_name") == flow_name]
    return runs[::-1][:limit]


def _run_json(entry: dict[str, Any]) -> dict[str, Any]:
    run = entry["run"]
    state = str(run.get("state") or "COMPLETED")
    return {
        "id": entry["id"],
        "name": None,
        "flow_name": run.get("flow_name"),
        "kind": "interactive",
        "state": {
            "type": state,
            "name": state.capitalize(),
            "message": run.get("message"),
            "timestamp": run.get("end_time") or entry.get("recorded"),
        },
        "parameters": run.get("parameters") or {},
        "tags": run.get("tags") or [],
        "notebook_path": run.get("notebook_path"),
        "start_time": run.get("start_time"),
        "end_time": run.get("end_time"),
        "log_count": len(entry.get("logs") or []),
        "logs": entry.get("logs") or [],
    }


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()
