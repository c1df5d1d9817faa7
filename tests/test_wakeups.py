"""Wake-ups between servers on one PostgreSQL database: what one publishes, the others hear."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from nbflows.extension.orchestrator import Notifier
from nbflows.store.db import Database
from nbflows.store.pg_wakeups import MAX_PAYLOAD, PgWakeups

from .pg_support import postgres_server

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def database() -> Iterator[Database]:
    with postgres_server() as url:
        db = Database(url, migrate=False)
        yield db
        db.dispose()


async def _hear(database: Database, publish: list[tuple[str, ...]]) -> tuple[list[str], list[str]]:
    """Two bridges on one loop, as two servers: `a` publishes; what do `a` and `b` hear?"""
    loop = asyncio.get_running_loop()
    heard: dict[str, list[str]] = {"a": [], "b": []}
    bridges = {
        name: PgWakeups(database.engine, loop, deliver=heard[name].extend, wake_all=lambda: None)
        for name in heard
    }
    for bridge in bridges.values():
        bridge.start()
    try:
        for bridge in bridges.values():
            assert await loop.run_in_executor(None, bridge.listening.wait, 30)
        for topics in publish:
            bridges["a"].publish(topics)
        expected = {t for topics in publish for t in topics}
        for _ in range(300):
            if set(heard["b"]) >= expected:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)  # an echo to `a` would have arrived by now
    finally:
        for bridge in bridges.values():
            await loop.run_in_executor(None, bridge.stop)
    return heard["a"], heard["b"]


def test_topics_published_by_one_server_reach_the_other_only(database: Database) -> None:
    worker = "worker:p1:my laptop's worker"  # names are any text
    own, other = asyncio.run(_hear(database, [("pool:p1",), ("run:r1", worker)]))
    assert sorted(other) == sorted(["pool:p1", "run:r1", worker])
    assert own == []  # a server's own notifications are already delivered locally


def test_more_topics_than_one_notification_holds_all_arrive(database: Database) -> None:
    many = tuple(f"run:{i:032d}" for i in range(3 * MAX_PAYLOAD // 30))
    _, other = asyncio.run(_hear(database, [many]))
    assert set(other) == set(many)


def test_notifier_wakes_every_waiter_when_wake_ups_may_have_been_missed() -> None:
    async def scenario() -> tuple[bool, bool]:
        notifier = Notifier()
        with notifier.subscribe(["pool:a"]) as a, notifier.subscribe(["run:b"]) as b:
            notifier.wake_all()
            return await a.wait(0), await b.wait(0)

    assert asyncio.run(scenario()) == (True, True)
