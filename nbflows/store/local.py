"""Importing the local journal (`nbflows.client.journal`) into the store when a server starts.

Kernels without a server (plain IPython, VS Code) append their runs to the journal and never touch
the store; the server takes the journal over, imports each run under its journal id (so a second
import of the same entries adds nothing), and removes what it imported.
"""

from __future__ import annotations

import json
import logging
import os
from datetime import datetime
from pathlib import Path
from typing import Any

from nbflows.client import journal
from nbflows.protocol import StateType
from nbflows.services.schemas.bodies import InteractiveRunCreate, LogIn
from nbflows.store import tables as t
from nbflows.store.db import Database

log = logging.getLogger(__name__)


def import_journal(database: Database, database_url: str, path: Path | None = None) -> int:
    """Import the journal's runs meant for this store (`database_url`); return how many were
    new. Entries meant for another store stay in the journal.

    The journal is first renamed (kernels then append to a fresh one), imported, then deleted;
    a server stopped half-way imports the renamed file on its next start.
    """
    source = path or journal.journal_path()
    taken = source.with_name(source.name + ".importing")
    if source.exists() and not taken.exists():
        os.replace(source, taken)
    if not taken.exists():
        return 0
    imported = 0
    mine = journal.store_key(database_url)
    others = []
    for entry in journal.read_entries(taken):
        if entry.get("store") != mine:
            others.append(json.dumps(entry))
            continue
        try:
            imported += _import_entry(database, entry)
        except Exception as exc:  # one bad entry must not keep the server from starting
            log.warning("nbflows: journal entry %s not imported: %s", entry.get("id"), exc)
    if others:
        journal.append_lines(others, source)
    taken.unlink()
    return imported


def _import_entry(database: Database, entry: dict[str, Any]) -> int:
    from nbflows.services import flow_runs
    from nbflows.services import logs as run_logs

    run, run_id = entry["run"], str(entry["id"])
    with database.session() as s:
        if s.get(t.FlowRun, run_id) is not None:
            return 0
        created = flow_runs.create_interactive_run(
            s,
            InteractiveRunCreate(
                flow_name=run["flow_name"],
                parameters=run.get("parameters") or {},
                tags=run.get("tags") or [],
                notebook_path=run.get("notebook_path"),
            ),
            run_id=run_id,
        )
        if run.get("outputs"):
            created.outputs = dict(run["outputs"])
        if run.get("start_time"):
            created.start_time = _when(run["start_time"])
        state = StateType(run.get("state", StateType.COMPLETED.value))
        if state is not StateType.RUNNING:
            flow_runs.transition(created, state, message=run.get("message"))
            if run.get("end_time"):
                created.end_time = _when(run["end_time"])
        s.flush()
        if entry.get("logs"):
            run_logs.write_logs(s, created.id, [LogIn.model_validate(x) for x in entry["logs"]])
        return 1


def _when(value: datetime | str) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(value)
