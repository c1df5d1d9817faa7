"""The async face of the store: database work runs in a thread pool, never on the event loop.

Long polls (workers waiting for a run, watchers waiting for logs) park on `Notifier` topics and
are woken by the change itself, so a run is handed out as soon as it is created.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, TypeVar

from sqlalchemy.orm import Session

from .store.db import Database

T = TypeVar("T")


class Notifier:
    """asyncio wake-ups by topic (`pool:<id>`, `run:<id>`); call from the loop's thread."""

    def __init__(self) -> None:
        self._events: dict[str, set[asyncio.Event]] = defaultdict(set)

    def notify(self, *topics: str) -> None:
        for topic in topics:
            for event in self._events.pop(topic, ()):
                event.set()

    async def wait(self, topics: list[str], timeout: float) -> bool:
        """True when woken by one of `topics`, False on timeout."""
        if timeout <= 0:
            return False
        event = asyncio.Event()
        for topic in topics:
            self._events[topic].add(event)
        try:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(event.wait(), timeout)
            return event.is_set()
        finally:
            for topic in topics:
                waiters = self._events.get(topic)
                if waiters is not None:
                    waiters.discard(event)
                    if not waiters:
                        self._events.pop(topic, None)


class Orchestrator:
    """Runs service functions `fn(session, *args)` in a transaction on a worker thread."""

    def __init__(self, database: Database, root_dir: str | None = None, threads: int = 8) -> None:
        self.db = database
        self.root_dir = root_dir
        self.notifier = Notifier()
        self.scheduler_wakeup = asyncio.Event()
        self._executor = ThreadPoolExecutor(threads, thread_name_prefix="nbflows-db")

    async def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._executor, partial(self._in_session, fn, *args, **kwargs)
        )

    def _in_session(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        with self.db.session() as session:
            return fn(session, *args, **kwargs)

    def wake_scheduler(self) -> None:
        """Ask for a scheduler pass now (a deployment or its schedules changed)."""
        self.scheduler_wakeup.set()

    def call_sync(self, fn: Callable[[Session], T]) -> T:
        return self._in_session(fn)

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
        self.db.dispose()
