"""Scheduling, as a user meets it: deployments made with the CLI run at their time on the server
the README starts, on SQLite (the default store) and on PostgreSQL; the server restarted in
between; catch-up policies after a paused pool is resumed.

Time bounds here only catch "never" or "very late": DESIGN's target (a scheduled run starts
≤ 1 s after its time) is measured in bench/, the lateness seen here is printed.
"""

from __future__ import annotations

import contextlib
import time
from datetime import datetime, timedelta, timezone
from functools import partial
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from tests.journeys.conftest import Journey
from tests.pg_support import postgres_server

UTC = timezone.utc
#: Interval runs come this often; catch-up runs a little more often so several go Late quickly.
EVERY, CATCHUP_EVERY = 5, 4
#: A run this long past its time is Late (nbflows.scheduling.scheduler.LATE_AFTER), marked so by the next
#: scheduler pass: they come every 5 s, later on a loaded machine.
LATE_AFTER, PASS_SLACK = 15, 10
#: "Within seconds": far above the normal figure (well under a second), far below "never".
ON_TIME = timedelta(seconds=15)
POLICIES = ("all", "latest", "skip")


def due(run: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(run["expected_start_time"])


def now() -> datetime:
    return datetime.now(UTC)


def runs_of(journey: Journey, deployment: str) -> list[dict[str, Any]]:
    """The deployment's runs, oldest scheduled time first."""
    found = journey.http("GET", f"deployments/name/trivial/{deployment}")
    assert found.status_code == 200, found.text
    runs = journey.http(
        "GET", "flow_runs", params={"deployment_id": found.json()["id"], "limit": 1000}
    )
    assert runs.status_code == 200, runs.text
    return sorted(runs.json(), key=lambda r: r["expected_start_time"])


def completed(runs: list[dict[str, Any]], after: datetime | None = None) -> list[dict[str, Any]]:
    return [
        r for r in runs if r["state"]["type"] == "COMPLETED" and (after is None or due(r) > after)
    ]


def deploy(journey: Journey, name: str, pool: str, *schedule: str) -> None:
    journey.cli(
        "deploy", "notebooks/trivial.ipynb", "--name", name, "--pool", pool, *schedule, check=True
    )


def check_on_time(
    runs: list[dict[str, Any]], windows: list[tuple[datetime, datetime]], what: str
) -> int:
    """Every run due while the server was up started within seconds of its time and completed;
    returns how many were checked."""
    checked = 0
    for run in runs:
        time_ = due(run)
        if not any(start <= time_ <= end for start, end in windows):
            continue
        assert run["state"]["type"] == "COMPLETED", (what, run["state"], run["expected_start_time"])
        lateness = datetime.fromisoformat(run["start_time"]) - time_
        print(f"{what}: due {time_:%H:%M:%S}, started {lateness.total_seconds():.2f} s later")
        assert timedelta(0) <= lateness < ON_TIME, (what, run)
        checked += 1
    return checked


def ended_before(journey: Journey, deployment: str, moment: datetime) -> bool:
    return all(
        r["state"]["type"] in ("COMPLETED", "CANCELLED")
        for r in runs_of(journey, deployment)
        if due(r) < moment
    )


def check_no_duplicates(runs: list[dict[str, Any]], what: str) -> None:
    times = [r["expected_start_time"] for r in runs]
    assert len(times) == len(set(times)), f"{what}: a scheduled time got two runs"


def check_catchup(policy: str, runs: list[dict[str, Any]], resumed: datetime) -> None:
    """What ran of the runs due before the pool was resumed, and what was skipped and why."""
    before = [r for r in runs if due(r) < resumed]
    # Certainly marked Late before the resume: a pass came after they were LATE_AFTER past due.
    certainly_late = [
        r for r in before if due(r) < resumed - timedelta(seconds=LATE_AFTER + PASS_SLACK)
    ]
    seen = (
        policy,
        f"resumed {resumed:%H:%M:%S}",
        [(f"{due(r):%H:%M:%S}", r["state"]["name"]) for r in before],
    )
    assert len(certainly_late) >= 3, ("not enough runs went Late", seen)
    ran = [r for r in certainly_late if r["state"]["type"] == "COMPLETED"]
    skipped = [r for r in certainly_late if r["state"]["name"] == "Skipped"]
    assert len(ran) + len(skipped) == len(certainly_late), seen
    for run in skipped:
        assert run["state"]["type"] == "CANCELLED" and run["start_time"] is None, run
        assert f"catch-up policy is '{policy}'" in run["state"]["message"], run["state"]
    if policy == "all":
        assert all(r["state"]["type"] == "COMPLETED" for r in before), seen
    elif policy == "skip":
        assert not ran, seen
    else:
        # Only the newest Late run may run: all older ones were skipped ...
        assert len(ran) <= 1 and (not ran or ran[0] is certainly_late[-1]), seen
        # ... and the newest did (the last certainly late, or a later one that went Late too).
        assert any(r["state"]["type"] == "COMPLETED" for r in before), seen


@pytest.mark.slow
@pytest.mark.parametrize(
    "store", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def test_schedules_run_on_time_across_a_restart_and_catch_up_by_policy(
    journey: Journey, store: str
) -> None:
    with contextlib.ExitStack() as stack:
        if store == "postgresql":
            journey.env["NBFLOWS_DATABASE_URL"] = stack.enter_context(postgres_server())
            stack.callback(journey.stop)  # before its database goes
        # Journeys need schedules faster than the default floor of 10 s.
        journey.env["NBFLOWS_MIN_SCHEDULE_INTERVAL"] = "1"
        scheduling_journey(journey.start())


def scheduling_journey(journey: Journey) -> None:
    up_since = now()
    journey.cli("work-pool", "create", "timely", "--type", "process", check=True)
    journey.cli("work-pool", "create", "catchup", "--type", "process", check=True)
    journey.cli("work-pool", "pause", "catchup", check=True)

    # Too fast for this server: refused, saying the minimum and how to change it.
    refused = journey.cli(
        "deploy",
        "notebooks/trivial.ipynb",
        "--name",
        "too-fast",
        "--pool",
        "timely",
        "--interval",
        "0.5",
    )
    assert refused.returncode != 0
    assert "the minimum is 1 s" in refused.stderr, refused.stderr
    assert "min_schedule_interval" in refused.stderr and "Traceback" not in refused.stderr

    deploy(journey, "every-5s", "timely", "--interval", str(EVERY))
    # Only in this hour and the next in Kathmandu (UTC+05:45): never now if the zone were ignored.
    hour = datetime.now(ZoneInfo("Asia/Kathmandu")).hour
    cron = f"* {hour},{(hour + 1) % 24} * * *"
    deploy(journey, "kathmandu", "timely", "--cron", cron, "--timezone", "Asia/Kathmandu")
    for policy in POLICIES:
        deploy(
            journey,
            f"catch-{policy}",
            "catchup",
            "--interval",
            str(CATCHUP_EVERY),
            "--catchup",
            policy,
        )

    # The paused pool's runs go Late, one by one; the other pool's runs run at their time.
    first = due(runs_of(journey, "catch-latest")[0])
    ready = first + timedelta(seconds=LATE_AFTER + PASS_SLACK + 3 * CATCHUP_EVERY)
    journey.wait_for("several runs Late", lambda: now() > ready, timeout=120, every=1)
    journey.cli("work-pool", "resume", "catchup", check=True)
    resumed = now()
    for name in [f"catch-{policy}" for policy in POLICIES]:
        journey.wait_for(
            f"{name}: every run due before the resume has ended",
            partial(ended_before, journey, name, resumed),
        )
    journey.cli("work-pool", "pause", "catchup", check=True)  # enough of those
    for policy in POLICIES:
        check_catchup(policy, runs_of(journey, f"catch-{policy}"), resumed)

    journey.wait_for(
        "a Kathmandu cron run completed", lambda: completed(runs_of(journey, "kathmandu"))
    )
    # Checked whatever their time: the one waited for may be due a moment before the stop.
    cron_done = {r["id"] for r in completed(runs_of(journey, "kathmandu"))}
    down_since = now()
    journey.stop()
    time.sleep(2)
    journey.start()
    up_again = now()
    journey.wait_for(
        "interval runs completed after the restart",
        lambda: len(completed(runs_of(journey, "every-5s"), after=up_again)) >= 2,
    )
    settled = now()
    journey.wait_for(
        "every run due since the restart has ended",
        partial(ended_before, journey, "every-5s", settled),
    )
    interval_runs, cron_runs = runs_of(journey, "every-5s"), runs_of(journey, "kathmandu")
    before_restart = (up_since, down_since - timedelta(seconds=3))
    after_restart = (up_again, settled)
    print(f"server down from {down_since:%H:%M:%S} to {up_again:%H:%M:%S}")
    assert check_on_time(interval_runs, [before_restart], "every 5 s") >= 5
    assert check_on_time(interval_runs, [after_restart], "every 5 s, restarted") >= 2
    assert (
        check_on_time(
            [r for r in cron_runs if r["id"] in cron_done],
            [(up_since, down_since)],
            "cron in Kathmandu",
        )
        >= 1
    )
    check_on_time(
        [r for r in cron_runs if r["id"] not in cron_done],
        [before_restart, after_restart],
        "cron in Kathmandu, later",
    )
    for run in cron_runs:
        assert due(run).second == 0, run
        assert due(run).astimezone(ZoneInfo("Asia/Kathmandu")).hour in (hour, (hour + 1) % 24), run
    for name, runs in [("every-5s", interval_runs), ("kathmandu", cron_runs)] + [
        (f"catch-{p}", runs_of(journey, f"catch-{p}")) for p in POLICIES
    ]:
        check_no_duplicates(runs, name)
