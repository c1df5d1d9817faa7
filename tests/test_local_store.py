"""A kernel without a server never opens the store: its runs go to the local journal, which the
next server imports (only the entries meant for its store, each once)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from nbflows.client import journal
from nbflows.store.db import Database
from nbflows.store.local import import_journal

from .servers import NBFLOWS_ENV, start_server

KERNEL = """
import sys
from IPython.core.interactiveshell import InteractiveShell
ip = InteractiveShell.instance()
ip.run_line_magic("load_ext", "nbflows")
ip.run_cell("%%flow offline --tags lab\\nprint('hello from plain IPython')")
ip.run_cell("%%flow offline\\nraise RuntimeError('boom')")
from nbflows.kernel_magics import get_reporter
assert get_reporter().flush(30)
print(sorted(m for m in ("sqlalchemy", "alembic") if m in sys.modules))
"""


def test_a_flow_recorded_without_a_server_appears_once_one_starts(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if k not in NBFLOWS_ENV}
    env.pop("NBFLOWS_DATABASE_URL", None)
    env.update(JUPYTER_DATA_DIR=str(data), JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"))
    out = subprocess.run(
        [sys.executable, "-c", KERNEL], env=env, capture_output=True, text=True, cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr
    # The kernel neither imported the store nor created (or migrated) a database.
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout
    assert not (data / "nbflows" / "nbflows.db").exists()
    assert (data / "nbflows" / "journal.jsonl").is_file()

    # The server a user starts on this machine uses the default store: it imports the journal.
    default_url = f"sqlite:///{data / 'nbflows' / 'nbflows.db'}"
    server = start_server(
        tmp_path / "srv",
        embedded_worker=False,
        db_url=default_url,
        env={"JUPYTER_DATA_DIR": str(data)},
    )
    try:
        runs = server.http("GET", "flow_runs", params={"flow_name": "offline"}).json()
        by_state = {r["state"]["type"]: r for r in runs}
        assert set(by_state) == {"COMPLETED", "FAILED"}, runs
        assert by_state["COMPLETED"]["tags"] == ["lab"]
        assert by_state["COMPLETED"]["kind"] == "interactive"
        assert "boom" in by_state["FAILED"]["state"]["message"]
        run_id = by_state["COMPLETED"]["id"]
        lines = server.http("GET", f"flow_runs/{run_id}/logs").json()["items"]
        assert [x["message"] for x in lines] == ["hello from plain IPython"]
    finally:
        server.stop()
    assert not (data / "nbflows" / "journal.jsonl").exists()  # imported, so emptied


def test_import_takes_only_its_stores_entries_and_each_once(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    url = f"sqlite:///{tmp_path / 'mine.db'}"
    mine = journal.append_run({"flow_name": "a", "state": "COMPLETED"}, path=path)
    entry = json.loads(path.read_text())
    entry["store"] = journal.store_key(url)
    other = {**entry, "id": "f" * 32, "store": journal.store_key("postgresql://elsewhere/db")}
    path.write_text(json.dumps(entry) + "\n" + json.dumps(other) + "\n" + '{"torn": ')
    database = Database(url)
    try:
        assert import_journal(database, url, path) == 1
        left = [json.loads(line) for line in path.read_text().splitlines()]
        assert [e["id"] for e in left] == ["f" * 32]  # meant for another store: kept
        path.write_text(json.dumps(entry) + "\n")  # the same entry again (an interrupted import)
        assert import_journal(database, url, path) == 0
        with database.session() as s:
            from nbflows.store import tables as t

            assert s.get(t.FlowRun, mine) is not None
    finally:
        database.dispose()


def test_a_store_migrated_by_an_unknown_nbflows_version_is_named_with_what_to_do(
    tmp_path: Path,
) -> None:
    """A database whose schema revision this nbflows does not know (a newer version, or a
    development branch) is refused with its revision and the way out, not alembic's error."""
    import pytest
    from sqlalchemy import text

    from nbflows.errors import NBFlowsError

    url = f"sqlite:///{tmp_path / 'nbflows.db'}"
    Database(url).dispose()
    newer = Database(url, migrate=False)
    with newer.engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '0099_future'"))
    newer.dispose()

    with pytest.raises(NBFlowsError) as refused:
        Database(url)
    message = str(refused.value)
    assert "0099_future" in message and str(tmp_path / "nbflows.db") in message
    assert "NBFLOWS_DATABASE_URL" in message
