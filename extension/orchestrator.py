"""The async face of the store: database work runs in a thread pool, never on the event loop.

Long polls (workers waiting for a run, watchers waiting for logs) park on `Notifier` topics and
are woken by the change itself, so a run is handed out as soon as it is created. On PostgreSQL the
wake-ups also reach the other servers sharing the database (`store.pg_wakeups`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, TypeVar

from nbflows.errors import ServiceUnavailable
from nbflows.results import ResultStore
from nbflows.store.db import Database

T = TypeVar("T")

log = logging.getLogger("nbflows")

#: Threads for slow work without a session (`Orchestrator.offload`).
SLOW_THREADS = 2


class Subscription:
    """Interest in some topics, taken *before* reading the state it guards, so that a change
    committed between the read and the wait still wakes the waiter (no lost wake-ups)."""

    def __init__(self, notifier: Notifier, topics: list[str]) -> None:
        self.notifier = notifier
        self.topics = topics
        self.event = asyncio.Event()

    def __enter__(self) -> Subscription:
        for topic in self.topics:
            self.notifier._events[topic].add(self.event)
        return self

    def __exit__(self, *exc: object) -> None:
        for topic in self.topics:
            waiters = self.notifier._events.get(topic)
            if waiters is not None:
                waiters.discard(self.event)
                if not waiters:
                    self.notifier._events.pop(topic, None)

    async def wait(self, timeout: float) -> bool:
        """True when one of the topics was notified since the subscription began."""
        if not self.event.is_set() and timeout > 0:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.event.wait(), timeout)
        return self.event.is_set()


class Notifier:
    """asyncio wake-ups by topic (`pool:<id>`, `run:<id>`); call from the loop's thread."""

    def __init__(self) -> None:
        self._events: dict[str, set[asyncio.Event]] = defaultdict(set)
        #: Sends topics to the other servers on the same store (set on PostgreSQL).
        self.broadcast: Callable[[tuple[str, ...]], None] | None = None

    def notify(self, *topics: str) -> None:
        """Wake the waiters on `topics` here and on the other servers; call it once the change
        is committed."""
        self.wake(topics)
        if self.broadcast is not None and topics:
            self.broadcast(topics)

    def wake(self, topics: Iterable[str]) -> None:
        """Wake this server's waiters only."""
        for topic in topics:
            for event in self._events.get(topic, ()):
                event.set()

    def wake_all(self) -> None:
        """Wake every waiter (wake-ups may have been missed): each reads its state again."""
        for waiters in self._events.values():
            for event in waiters:
                event.set()

    def subscribe(self, topics: list[str]) -> Subscription:
        """Use as `with notifier.subscribe([...]) as sub: <read state>; await sub.wait(t)`."""
        return Subscription(self, topics)


class Orchestrator:
    """Runs service functions `fn(session, *args)` in a transaction on a worker thread."""

    def __init__(
        self,
        database: Database,
        root_dir: str | None = None,
        threads: int = 8,
        results: ResultStore | None = None,
    ) -> None:
        self.db = database
        self.root_dir = root_dir
        #: Where the files of runs are kept (the database keeps references).
        self.results = results or ResultStore()
        self.notifier = Notifier()
        self.scheduler_wakeup = asyncio.Event()
        #: pool name -> id, to subscribe to a pool's wake-ups before the first database read
        self.pool_ids: dict[str, str] = {}
        self._executor = ThreadPoolExecutor(threads, thread_name_prefix="nbflows-db")
        # Slow work without a session (exports on request) on threads of its own: it never
        # holds up database work such as heartbeats and claims.
        self._slow = ThreadPoolExecutor(SLOW_THREADS, thread_name_prefix="nbflows-slow")
        self._wakeups: Any = None

    def start(self) -> None:
        """Start what needs the running event loop: on PostgreSQL, wake-ups across servers."""
        if self.db.dialect != "postgresql" or self._wakeups is not None:
            return
        if self.db.engine.dialect.driver != "psycopg":
            log.warning(
                "nbflows: wake-ups reach other servers only with the psycopg (3) driver "
                "(postgresql+psycopg://...); with '%s', runs created through another server "
                "wait for the workers' next poll",
                self.db.engine.dialect.driver,
            )
            return
        from nbflows.store.pg_wakeups import PgWakeups

        self._wakeups = PgWakeups(
            self.db.engine,
            asyncio.get_running_loop(),
            deliver=self.notifier.wake,
            wake_all=self.notifier.wake_all,
        )
        self.notifier.broadcast = self._wakeups.publish
        self._wakeups.start()

    async def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        work = partial(self._in_session, fn, *args, **kwargs)
        try:
            future = loop.run_in_executor(self._executor, work)
        except RuntimeError:  # the executor is shut down: the server is stopping
            raise ServiceUnavailable("the nbflows server is shutting down; try again") from None
        return await future

    async def compute(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn(*args)` on the same threads, without a session: CPU work too heavy for the
        event loop (decoding, encoding or validating big payloads)."""
        loop = asyncio.get_running_loop()
        try:
            future = loop.run_in_executor(self._executor, partial(fn, *args))
        except RuntimeError:  # the executor is shut down: the server is stopping
            raise ServiceUnavailable("the nbflows server is shutting down; try again") from None
        return await future

    async def offload(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn(*args)` on the slow threads (nbconvert, a browser): seconds of work that
        must neither block the event loop nor take the database threads."""
        loop = asyncio.get_running_loop()
        try:
            future = loop.run_in_executor(self._slow, partial(fn, *args))
        except RuntimeError:  # the executor is shut down: the server is stopping
            raise ServiceUnavailable("the nbflows server is shutting down; try again") from None
        return await future

    def _in_session(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        with self.db.session() as session:
            return fn(session, *args, **kwargs)

    def wake_scheduler(self) -> None:
        """Ask for a scheduler pass now (a deployment or its schedules changed)."""
        self.scheduler_wakeup.set()

    def close(self) -> None:
        self.notifier.broadcast = None
        if self._wakeups is not None:
            self._wakeups.stop()
            self._wakeups = None
        self._slow.shutdown(wait=True, cancel_futures=True)
        self._executor.shutdown(wait=True, cancel_futures=True)
        self.db.dispose()
