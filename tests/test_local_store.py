"""Runs recorded without a server land in the store a server would use, and show up there."""

from __future__ import annotations

from pathlib import Path

import pytest

from nbflows.store import local

from .servers import start_server


def test_runs_recorded_without_a_server_appear_once_one_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db_url = f"sqlite:///{tmp_path / 'local.db'}"
    monkeypatch.setenv("NBFLOWS_DATABASE_URL", db_url)
    local.local_database.cache_clear()
    run_id = local.record_flow_run(
        {"flow_name": "offline", "state": "COMPLETED", "parameters": {"a": 1}},
        [{"message": "hello from plain IPython", "source": "stdout"}],
    )
    failed_id = local.record_flow_run(
        {"flow_name": "offline", "state": "FAILED", "message": "boom"}
    )
    local.local_database().dispose()
    local.local_database.cache_clear()

    server = start_server(tmp_path / "srv", embedded_worker=False, db_url=db_url)
    try:
        runs = {
            r["id"]: r
            for r in server.http("GET", "flow_runs", params={"flow_name": "offline"}).json()
        }
        assert runs[run_id]["state"]["type"] == "COMPLETED"
        assert runs[failed_id]["state"]["message"] == "boom"
        lines = server.http("GET", f"flow_runs/{run_id}/logs").json()["items"]
        assert [x["message"] for x in lines] == ["hello from plain IPython"]
    finally:
        server.stop()
