"""Automations against a real store: events fire once per (rule, run, condition), claims hand
each delivery to one claimer, credentials are kept out of what is shown."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from nbflows.automations import outbox, rules, triggers
from nbflows.automations.channels import mask_url
from nbflows.automations.schemas import AutomationCreate
from nbflows.automations.tables import AutomationDelivery
from nbflows.errors import InvalidInput
from nbflows.services import deployments, flow_runs
from nbflows.services import work_pools as pools
from nbflows.services.schemas.bodies import DeployRequest, RunRequest, SetState, WorkPoolCreate
from nbflows.store import tables as t
from nbflows.store.db import Database

NOTEBOOK = Path(__file__).parents[1] / "notebooks" / "trivial.ipynb"


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(f"sqlite:///{tmp_path / 'automations.db'}")
    shutil.copy(NOTEBOOK, tmp_path / "trivial.ipynb")
    with database.session() as s:
        pools.create_work_pool(s, WorkPoolCreate(name="p", type="process"))
        deployments.deploy(
            s,
            DeployRequest(path="trivial.ipynb", name="d", work_pool_name="p", retries=1),
            str(tmp_path),
        )
    yield database
    database.dispose()


def rule(db: Database, **body: Any) -> None:
    body = {"name": "r", "actions": [{"type": "notify", "url": "json://127.0.0.1:9/x"}], **body}
    with db.session() as s:
        rules.create_automation(s, AutomationCreate.model_validate(body))


def new_run(db: Database) -> str:
    with db.session() as s:
        run, _ = flow_runs.create_deployment_run(
            s, deployments.get_deployment(s, "trivial/d"), RunRequest()
        )
        return run.id


def end(db: Database, run_id: str, state: str, **extra: Any) -> None:
    with db.session() as s:
        run = flow_runs.get_flow_run(s, run_id)
        if run.state_type == "SCHEDULED":
            flow_runs.set_state(s, run_id, SetState(type="RUNNING"))
        flow_runs.set_state(s, run_id, SetState(type=state, **extra))


def events(db: Database) -> list[tuple[str, str]]:
    with db.session() as s:
        rows = s.execute(select(AutomationDelivery.condition, AutomationDelivery.flow_run_id))
        return sorted((condition, run_id or "") for condition, run_id in rows)


def test_a_failure_with_retries_left_fires_only_when_the_last_attempt_fails(db: Database) -> None:
    rule(db, trigger={"kind": "state", "states": ["FAILED"]})
    run_id = new_run(db)
    end(db, run_id, "FAILED")  # attempt 1 of 2: retried, nobody is told
    assert events(db) == []
    end(db, run_id, "FAILED")
    assert events(db) == [("FAILED", run_id)]


def test_a_condition_seen_by_many_passes_fires_once(db: Database) -> None:
    rule(db, trigger={"kind": "late", "after": 5})
    run_id = new_run(db)
    later = t.utcnow() + timedelta(seconds=30)
    with db.session() as s:
        assert triggers.detect_conditions(s, now=t.utcnow()) == 0  # not late enough yet
    for _ in range(3):
        with db.session() as s:
            triggers.detect_conditions(s, now=later)
    assert events(db) == [("late", run_id)]


def test_each_delivery_is_claimed_by_one_of_many_claimers(db: Database) -> None:
    rule(db, trigger={"kind": "state", "states": ["COMPLETED"]})
    for _ in range(40):
        end(db, new_run(db), "COMPLETED")
    claimed: list[str] = []
    lock = threading.Lock()

    def claimer(name: str) -> None:
        while True:
            with db.session() as s:
                got = outbox.claim_due(s, name, limit=3)
            if not got:
                return
            with lock:
                claimed.extend(delivery_id for delivery_id, _ in got)

    threads = [threading.Thread(target=claimer, args=(f"c{i}",)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(claimed) == 40 and len(set(claimed)) == 40
    with db.session() as s:
        count = s.scalar(
            select(func.count()).where(AutomationDelivery.status == "sending")  # type: ignore[arg-type]
        )
    assert count == 40


def test_a_failed_attempt_is_retried_later_and_a_stale_claim_records_nothing(
    db: Database,
) -> None:
    rule(db, trigger={"kind": "state", "states": ["COMPLETED"]})
    end(db, new_run(db), "COMPLETED")
    with db.session() as s:
        [(delivery_id, attempt)] = outbox.claim_due(s, "a")
        assert outbox.record(s, delivery_id, attempt, "boom", retry_delay=60, max_attempts=3)
        assert outbox.claim_due(s, "a") == []  # not due for a minute
        assert not outbox.record(s, delivery_id, attempt, None, retry_delay=60, max_attempts=3)
    with db.session() as s:
        row = s.get(AutomationDelivery, delivery_id)
        assert row is not None and (row.status, row.attempts, row.last_error) == (
            "pending",
            1,
            "boom",
        )
        assert row.next_attempt > t.utcnow() + timedelta(seconds=50)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("mailto://bot:pa55@smtp.example.com:587?to=a@x.org", "mailto://bot:***@smtp.example.com:587?to=a@x.org"),
        ("https://hooks.slack.com/services/T0/B0/SECRET", "https://hooks.slack.com/***"),
        ("json://127.0.0.1:8000/path?token=SECRET", "json://127.0.0.1:8000/***"),
        ("slack://TokenA/TokenB/TokenC", "slack://***"),
        ("ntfy://user:SECRET@ntfy.sh/topic", "ntfy://***"),
    ],
)  # fmt: skip
def test_urls_are_shown_without_their_credentials(url: str, shown: str) -> None:
    assert mask_url(url) == shown


@pytest.mark.parametrize(
    ("action", "says"),
    [
        ({"type": "notify", "url": "not a url"}, "is not a URL"),
        ({"type": "notify", "url": "mailto://smtp.example.com"}, "who gets the e-mail"),
        ({"type": "notify", "url": "nosuchscheme://x"}, "apprise does not understand"),
        ({"type": "notify", "url": "slack://a/b/c", "secret": "s"}, "only http(s) webhooks"),
        ({"type": "run_deployment", "deployment": "nope/nope"}, "no deployment 'nope/nope'"),
    ],
)
def test_bad_actions_are_refused_saying_what_is_wrong(
    db: Database, action: dict[str, Any], says: str
) -> None:
    with pytest.raises(InvalidInput, match=says.replace("(", r"\(").replace(")", r"\)")):
        rule(db, trigger={"kind": "state", "states": ["FAILED"]}, actions=[action])
