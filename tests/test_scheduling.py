"""The scheduler pass against a real store: runs become due at their time, Late runs follow the
deployment's catch-up policy."""

from __future__ import annotations

import contextlib
import itertools
import re
import shutil
import sqlite3
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select, text

from nbflows.automations import rules
from nbflows.automations.delivery import Deliverer, DeliverySettings
from nbflows.automations.schemas import AutomationCreate
from nbflows.errors import InvalidInput
from nbflows.pipelines.deploy import deploy_pipeline
from nbflows.results import ResultStore
from nbflows.scheduling import scheduler as scheduling
from nbflows.services import claims, deployments, flow_runs, heartbeats, logs
from nbflows.services import work_pools as pools
from nbflows.services.schemas.bodies import (
    DeployRequest,
    HeartbeatRequest,
    InteractiveRunCreate,
    LogIn,
    PipelineDeployRequest,
    RunRequest,
    SetState,
    WorkPoolCreate,
)
from nbflows.store import tables as t
from nbflows.store.db import Database

from .pg_support import postgres_server
from .servers import free_port, start_server

UTC = timezone.utc
NOTEBOOK = Path(__file__).parents[1] / "notebooks" / "trivial.ipynb"
DATETIME_COLUMNS = ("expected_start_time", "state_timestamp", "created", "updated")
STORED_FORMAT = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}$")


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(f"sqlite:///{tmp_path / 'sched.db'}")
    yield database
    database.dispose()


def deploy(
    db: Database, root: Path, name: str, schedule: dict[str, object], **extra: object
) -> str:
    shutil.copy(NOTEBOOK, root / "trivial.ipynb")
    with db.session() as s:
        if not pools.list_work_pools(s):
            pools.create_work_pool(s, WorkPoolCreate(name="p", type="process"))
        d, _ = deployments.deploy(
            s,
            DeployRequest(
                path="trivial.ipynb",
                name=name,
                work_pool_name="p",
                schedules=[schedule],
                **extra,  # type: ignore[arg-type]
            ),
            str(root),
        )
        return d.id


@pytest.fixture
def nbformat_adapter() -> Iterator[None]:
    """The process-wide sqlite3 datetime adapter `nbformat.sign` registers in a Jupyter server."""
    before = sqlite3.adapters.get((datetime, sqlite3.PrepareProtocol))
    sqlite3.register_adapter(datetime, lambda value: value.isoformat())
    yield
    if before is None:
        sqlite3.adapters.pop((datetime, sqlite3.PrepareProtocol), None)
    else:
        sqlite3.register_adapter(datetime, before)


@pytest.mark.usefixtures("nbformat_adapter")
def test_scheduled_runs_are_due_at_their_time_despite_a_process_wide_sqlite_adapter(
    db: Database, tmp_path: Path
) -> None:
    deploy(db, tmp_path, "minutely", {"kind": "cron", "cron": "* * * * *"})
    now = t.utcnow()
    # The pass ran three minutes ago: the runs of the last three minutes are due now.
    with db.session() as s:
        assert scheduling.schedule_runs(s, now=now - timedelta(minutes=3)).created >= 3
    with db.session() as s:
        claimed = claims.claim_next_runs(s, "p", "w", None, 10)
    assert len(claimed) >= 3, "due runs were not claimable"
    with db.session() as s:
        stored = s.execute(text(f"SELECT {', '.join(DATETIME_COLUMNS)} FROM flow_runs")).all()
    for row in stored:
        for column, value in zip(DATETIME_COLUMNS, row, strict=True):
            assert STORED_FORMAT.match(value), f"{column} stored as {value!r}"
    with db.session() as s:
        late = scheduling.mark_late_runs(s, now=now + timedelta(minutes=2))
    assert late.late >= 1, "runs past their time never went Late"


@pytest.mark.usefixtures("nbformat_adapter")
def test_every_stored_time_has_the_one_format_despite_a_process_wide_sqlite_adapter(
    db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cryptography.fernet import Fernet

    from nbflows.services import credentials, secrets

    monkeypatch.setenv(secrets.KEY_ENV, Fernet.generate_key().decode())
    dep = deploy(db, tmp_path, "all-paths", {"kind": "interval", "interval": 60})
    with db.session() as s:  # a scheduled pipeline: its runs and step runs have times too
        deploy_pipeline(
            s,
            PipelineDeployRequest(
                name="every-minute",
                pipeline={
                    "name": "pipe",
                    "steps": [{"name": "one", "notebook": "trivial.ipynb", "pool": "p"}],
                },
                schedules=[{"kind": "interval", "interval": 60}],
            ),
            str(tmp_path),
        )
    now = t.utcnow()
    with db.session() as s:
        # A completed run fires this rule: one delivery fails for good, one is to be retried.
        rules.create_automation(
            s,
            AutomationCreate.model_validate(
                {
                    "name": "on-completed",
                    "trigger": {"kind": "state", "states": ["COMPLETED"]},
                    "actions": [
                        {"type": "cancel_run"},
                        {"type": "notify", "url": f"http://127.0.0.1:{free_port()}/hook"},
                    ],
                }
            ),
        )
        scheduling.schedule_runs(s, now=now - timedelta(minutes=5))
        scheduling.advance_pipelines(s)
        d = deployments.get_deployment(s, dep)
        later = RunRequest(idempotency_key="k", scheduled_time=now + timedelta(hours=2))
        manual, _ = flow_runs.create_deployment_run(s, d, later)
        flow_runs.create_interactive_run(
            s, InteractiveRunCreate(flow_name="cell", heartbeat_interval=5)
        )
    with db.session() as s:
        heartbeats.heartbeat(s, "p", HeartbeatRequest(name="w"))
        claimed = claims.claim_next_runs(s, "p", "w", None, 2)
    run_id, fence = claimed[0]["flow_run"]["id"], claimed[0]["fence"]
    with db.session() as s:
        flow_runs.set_state(s, run_id, SetState(type="RUNNING", worker="w", fence=fence))
        logs.write_logs(s, run_id, [LogIn(message="hello")])
        # A notebook kept in the database before the result store (still read; see 0005).
        s.add(t.FlowRunNotebook(flow_run_id=manual.id, notebook="{}"))
        flow_runs.store_notebook(s, run_id, "{}", results=ResultStore(str(tmp_path / "results")))
        flow_runs.set_state(s, run_id, SetState(type="COMPLETED", worker="w", fence=fence))
        flow_runs.cancel(s, manual.id)
        scheduling.mark_late_runs(s)
        secrets.set_secret(s, "KEY", "value")
        credentials.create_worker_credential(s, "w", ["p"])
        credentials.revoke_worker_credential(s, "w")
    assert Deliverer(db, DeliverySettings()).deliver_due() == 2
    with db.session() as s:
        for table in t.Base.metadata.sorted_tables:
            for column in table.columns:
                if not isinstance(column.type, t.UTCDateTime):
                    continue
                query = f"SELECT {column.name} FROM {table.name} WHERE {column.name} IS NOT NULL"
                values = s.execute(text(query)).scalars().all()
                assert values or column.name in (
                    *("scheduled_until", "start_time", "end_time"),
                    "lease_until",  # only while a delivery is being made
                )
                for value in values:
                    assert STORED_FORMAT.match(value), f"{table.name}.{column.name}: {value!r}"


def late_pass(db: Database, now: datetime) -> None:
    with db.session() as s:
        scheduling.mark_late_runs(s, now=now)


def states(db: Database, deployment_id: str) -> list[tuple[str, str, str | None]]:
    with db.session() as s:
        runs = s.scalars(
            select(t.FlowRun)
            .where(t.FlowRun.deployment_id == deployment_id)
            .order_by(t.FlowRun.expected_start_time)
        ).all()
        return [(r.state_type, r.state_name, r.state_message) for r in runs]


@pytest.mark.parametrize("catchup", ["latest", "skip", "all"])
def test_catchup_policy_holds_when_runs_go_late_one_pass_at_a_time(
    db: Database, tmp_path: Path, catchup: str
) -> None:
    dep = deploy(db, tmp_path, catchup, {"kind": "interval", "interval": 60}, catchup=catchup)
    start = t.utcnow().replace(second=0, microsecond=0) - timedelta(minutes=10)
    with db.session() as s:
        scheduling.schedule_runs(s, now=start)
    # No worker: every minute one more run goes Late, each seen by its own pass.
    for minute in range(1, 6):
        late_pass(db, start + timedelta(minutes=minute) + scheduling.LATE_AFTER * 2)
    past = [x for x in states(db, dep)][:5]
    waiting = [x for x in past if x[0] == "SCHEDULED"]
    skipped = [x for x in past if x[0] == "CANCELLED"]
    if catchup == "all":
        assert [x[1] for x in waiting] == ["Late"] * 5 and not skipped
        return
    if catchup == "latest":
        assert [x[1] for x in past] == ["Skipped"] * 4 + ["Late"]
    else:
        assert [x[1] for x in past] == ["Skipped"] * 5
    for _, name, message in skipped:
        assert name == "Skipped"
        assert message and f"catch-up policy is '{catchup}'" in message


@pytest.mark.parametrize(
    "dialect", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def test_migration_scopes_keys_to_the_deployment_and_rewrites_times_stored_the_other_way(
    tmp_path: Path, dialect: str
) -> None:
    from alembic import command
    from alembic.config import Config
    from sqlalchemy.exc import IntegrityError

    from nbflows.store.db import MIGRATIONS

    with contextlib.ExitStack() as stack:
        if dialect == "sqlite":
            url = f"sqlite:///{tmp_path / 'old.db'}"
        else:
            url = stack.enter_context(postgres_server())
        old = Database(url, migrate=False)
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        with old.engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "0001")
        # What the scheduler's raw insert stored under nbformat's sqlite3 adapter.
        with old.engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO work_pools (id, name, type, base_job_template, paused, created, "
                    "updated) VALUES ('p', 'p', 'process', '{}', false, :t, :t)"
                ),
                {"t": "2026-11-29 20:00:00.000000"},
            )
            connection.execute(
                text(
                    "INSERT INTO work_queues (id, work_pool_id, name, priority, paused, created) "
                    "VALUES ('q', 'p', 'default', 1, false, :t)"
                ),
                {"t": "2026-11-29 20:00:00.000000"},
            )
            for dep in ("a", "b"):
                connection.execute(
                    text(
                        "INSERT INTO deployments (id, flow_name, name, kind, entrypoint, path, "
                        "working_dir, work_pool_id, work_queue_id, parameters, parameter_schema, "
                        "job_variables, paused, version, tags, retries, retry_delay, catchup, "
                        "created, updated) VALUES (:d, 'f', :d, 'notebook', 'x', 'x', 'x', 'p', "
                        "'q', '{}', '{}', '{}', false, 1, '[]', 0, 0, 'latest', :t, :t)"
                    ),
                    {"d": dep, "t": "2026-11-29 20:00:00.000000"},
                )
            old_format = "2026-11-29T20:44:30" if dialect == "sqlite" else "2026-11-29 20:44:30"
            connection.execute(
                text(
                    "INSERT INTO flow_runs (id, name, flow_name, kind, deployment_id, "
                    "work_pool_id, work_queue_id, state_type, state_name, state_timestamp, "
                    "parameters, job_variables, attempt, max_retries, retry_delay, "
                    "expected_start_time, idempotency_key, tags, log_count, logs_truncated, "
                    "has_notebook, created, updated) VALUES ('r', 'r', 'f', 'deployment', 'a', "
                    "'p', 'q', 'SCHEDULED', 'Scheduled', :t, '{}', '{}', 1, 0, 0, :t, 'k', '[]', "
                    "0, false, false, :t, :t)"
                ),
                {"t": old_format},
            )
            connection.execute(
                text(
                    "INSERT INTO logs (flow_run_id, timestamp, level, message, source) "
                    "VALUES ('r', :t, 20, 'kept', 'stdout')"
                ),
                {"t": "2026-11-29 20:44:31.000000"},
            )
            connection.execute(
                text(
                    "INSERT INTO flow_run_notebooks (flow_run_id, notebook, updated) "
                    "VALUES ('r', '{}', :t)"
                ),
                {"t": "2026-11-29 20:44:31.000000"},
            )
        old.dispose()
        db = Database(url)  # migrates to the newest revision, as a server starting does
        try:
            with db.session() as s:
                run = s.get(t.FlowRun, "r")
                assert run is not None
                # Rebuilding the table (SQLite) keeps the rows that reference it.
                assert [x.message for x in logs.read_logs(s, "r")] == ["kept"]
                assert (
                    flow_runs.read_notebook(s, "r", ResultStore(str(tmp_path / "results"))) == "{}"
                )
                assert run.expected_start_time == datetime(2026, 11, 29, 20, 44, 30, tzinfo=UTC)
                if dialect == "sqlite":
                    stored = s.execute(text(f"SELECT {', '.join(DATETIME_COLUMNS)} FROM flow_runs"))
                    assert all(STORED_FORMAT.match(v) for v in stored.one())
                # The key of deployment a is free for deployment b ...
                s.add(_run_row("r2", "b", "k"))
            # ... but taken for deployment a.
            with pytest.raises(IntegrityError), db.session() as s:
                s.add(_run_row("r3", "a", "k"))
        finally:
            db.dispose()


def _run_row(run_id: str, deployment_id: str, key: str) -> t.FlowRun:
    return t.FlowRun(
        id=run_id,
        name=run_id,
        flow_name="f",
        kind="deployment",
        deployment_id=deployment_id,
        work_pool_id="p",
        work_queue_id="q",
        state_type="SCHEDULED",
        state_name="Scheduled",
        idempotency_key=key,
    )


@pytest.mark.parametrize(
    ("schedule", "minimum", "gap"),
    [
        ({"kind": "interval", "interval": 0.001}, scheduling.MIN_INTERVAL, "0.001 s"),
        ({"kind": "rrule", "rrule": "FREQ=SECONDLY"}, scheduling.MIN_INTERVAL, "1 s"),
        ({"kind": "cron", "cron": "* * * * *", "timezone": "Asia/Kathmandu"}, 300, "60 s"),
    ],
)
def test_schedules_more_frequent_than_the_floor_are_refused_saying_how_to_change_it(
    schedule: dict[str, object], minimum: float, gap: str
) -> None:
    with pytest.raises(InvalidInput) as refused:
        scheduling.check_frequency([{"kind": "cron", "cron": "0 6 * * *"}, schedule], minimum)
    message = refused.value.message
    assert f"runs can be {gap} apart, the minimum is {minimum:g} s" in message
    assert "c.NBFlowsExtension.min_schedule_interval" in message
    assert "NBFLOWS_MIN_SCHEDULE_INTERVAL" in message
    scheduling.check_frequency([schedule], 0)  # 0 turns the floor off


def test_schedules_at_the_floor_are_accepted() -> None:
    scheduling.check_frequency(
        [
            {"kind": "interval", "interval": scheduling.MIN_INTERVAL},
            {"kind": "cron", "cron": "* * * * *"},
            {"kind": "rrule", "rrule": "FREQ=HOURLY"},
        ],
        scheduling.MIN_INTERVAL,
    )
    scheduling.check_frequency([{"kind": "cron", "cron": "*/5 * * * *"}], 300)


@pytest.mark.slow
def test_the_server_refuses_schedules_above_its_floor_with_a_422(tmp_path: Path) -> None:
    server = start_server(
        tmp_path, embedded_worker=False, extra_args=["--NBFlowsExtension.min_schedule_interval=120"]
    )
    try:
        assert server.http("POST", "work_pools", json={"name": "p", "type": "process"}).is_success

        def deploy(*schedules: dict[str, object]) -> httpx.Response:
            body = {"path": "trivial.ipynb", "name": "d", "work_pool_name": "p"}
            return server.http("POST", "deployments", json={**body, "schedules": schedules})

        for schedule in (
            {"kind": "interval", "interval": 0.001},
            {"kind": "rrule", "rrule": "FREQ=SECONDLY"},
            {"kind": "cron", "cron": "* * * * *", "timezone": "Europe/Paris"},
        ):
            refused = deploy(schedule)
            assert refused.status_code == 422, refused.text
            assert "the minimum is 120 s" in refused.json()["message"]
            assert "min_schedule_interval" in refused.json()["message"]
        created = deploy({"kind": "cron", "cron": "*/5 * * * *"})
        assert created.status_code == 201, created.text
        patched = server.http(
            "PATCH",
            f"deployments/{created.json()['id']}",
            json={"schedules": [{"kind": "interval", "interval": 60}]},
        )
        assert patched.status_code == 422, patched.text
        assert "the minimum is 120 s" in patched.json()["message"]
    finally:
        server.stop()


def test_a_frequent_schedule_has_no_gap_after_its_first_hundred_runs(
    db: Database, tmp_path: Path
) -> None:
    dep = deploy(db, tmp_path, "every-10s", {"kind": "interval", "interval": 10})
    start = t.utcnow().replace(microsecond=0)
    for seconds in range(0, 1800, 5):  # passes every 5 s for half an hour
        with db.session() as s:
            scheduling.schedule_runs(s, now=start + timedelta(seconds=seconds))
    with db.session() as s:
        times = s.scalars(
            select(t.FlowRun.expected_start_time)
            .where(t.FlowRun.deployment_id == dep)
            .order_by(t.FlowRun.expected_start_time)
        ).all()
    assert times[-1] >= start.replace(tzinfo=UTC) + timedelta(minutes=30), "runs stopped"
    gaps = {b - a for a, b in itertools.pairwise(times)}
    assert gaps == {timedelta(seconds=10)}, "runs are missing between scheduled times"
