"""At scale: two servers sharing one PostgreSQL store, each with its scheduler and worker."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from .pg_support import postgres_server
from .servers import start_server


@pytest.mark.postgres
@pytest.mark.slow
def test_two_servers_on_one_postgresql(tmp_path: Path) -> None:
    with postgres_server() as url:
        first = start_server(tmp_path / "a", db_url=url)
        second = start_server(tmp_path / "b", db_url=url, root=first.root)
        try:
            assert first.client().health()["database"] == "postgresql"
            client = first.client()
            client.create_work_pool("shared", "process")
            client.deploy(
                path="trivial.ipynb",
                name="every-minute",
                work_pool_name="shared",
                schedules=[{"kind": "cron", "cron": "* * * * *"}],
            )
            runs = [
                second.client().create_flow_run_from_deployment(
                    "trivial/every-minute", parameters={"x": i}
                )
                for i in range(6)
            ]
            finals = [client.watch_flow_run(r["id"], timeout=120) for r in runs]
            assert [f["state"]["type"] for f in finals] == ["COMPLETED"] * 6
            workers = {f["worker_name"] for f in finals}
            assert workers <= {w["name"] for w in client.list_workers("shared")}
            time.sleep(2.5)  # both schedulers have made passes by now
            upcoming = client.upcoming_runs("trivial/every-minute", limit=1000)
            times = [r["expected_start_time"] for r in upcoming]
            assert len(times) >= 3 and len(times) == len(set(times)), "duplicated scheduled runs"
        finally:
            second.stop()
            first.stop()
