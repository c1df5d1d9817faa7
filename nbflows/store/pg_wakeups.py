"""Wake-ups between servers sharing one PostgreSQL database (LISTEN/NOTIFY).

Each server publishes the topics it notifies locally (`pool:<id>`, `run:<id>`, ...) on one channel
and listens on it, so a run created through one server wakes the workers long-polling on another
at once. Two connections of their own, each served by a thread: the listener hands what it hears
to the event loop with `call_soon_threadsafe`; the publisher sends what the loop queued, after
the change was committed. Both reconnect when the database goes away; after a reconnect every
waiter is woken, since notifications sent meanwhile are lost.
"""

from __future__ import annotations

import asyncio
import json
import logging
import queue
import threading
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from sqlalchemy.engine import Engine

log = logging.getLogger("nbflows")

CHANNEL = "nbflows_wakeups"
#: PostgreSQL refuses NOTIFY payloads of 8000 bytes or more.
MAX_PAYLOAD = 7000
_STOP = object()


class PgWakeups:
    """Carries `Notifier` topics to the other servers on the same database, and back."""

    def __init__(
        self,
        engine: Engine,
        loop: asyncio.AbstractEventLoop,
        deliver: Callable[[list[str]], None],
        wake_all: Callable[[], None],
        retry_max: float = 10.0,
    ) -> None:
        #: Tells this server's own notifications (echoed by PostgreSQL) from the others'.
        self.origin = uuid.uuid4().hex[:16]
        cargs, cparams = engine.dialect.create_connect_args(engine.url)
        self._connect_args = (list(cargs), dict(cparams))
        self._loop = loop
        self._deliver = deliver
        self._wake_all = wake_all
        self._retry_max = retry_max
        self._outbox: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._stopping = threading.Event()
        self._threads = [
            threading.Thread(target=self._listen, name="nbflows-listen", daemon=True),
            threading.Thread(target=self._publish, name="nbflows-notify", daemon=True),
        ]
        #: Set once the listener has a LISTEN in place (tests and start-up logs).
        self.listening = threading.Event()

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def publish(self, topics: Iterable[str]) -> None:
        """Queue topics for the other servers; never blocks (callable from the event loop)."""
        self._outbox.put(tuple(topics))

    def stop(self, timeout: float = 3.0) -> None:
        self._stopping.set()
        self._outbox.put(_STOP)
        for thread in self._threads:
            if thread.is_alive():
                thread.join(timeout)

    # ---- threads -------------------------------------------------------------------------------

    def _connect(self) -> Any:
        import psycopg

        cargs, cparams = self._connect_args
        return psycopg.connect(*cargs, **{**cparams, "autocommit": True})

    def _to_loop(self, fn: Callable[..., None], *args: Any) -> None:
        try:
            self._loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:  # the loop is closed: the server is stopping
            self._stopping.set()

    def _listen(self) -> None:
        import psycopg

        delay = 0.5
        while not self._stopping.is_set():
            try:
                with self._connect() as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    if delay > 0.5:
                        log.info("nbflows: cross-server wake-ups restored")
                    delay = 0.5
                    self.listening.set()
                    # Whatever was notified before the LISTEN is unheard: every waiter reads again.
                    self._to_loop(self._wake_all)
                    while not self._stopping.is_set():
                        for note in conn.notifies(timeout=1.0):
                            self._heard(note.payload)
            except psycopg.Error as err:
                self.listening.clear()
                if self._stopping.is_set():
                    return
                log.warning(
                    "nbflows: cross-server wake-ups interrupted (%s); reconnecting in %.1f s",
                    _one_line(err),
                    delay,
                )
                self._stopping.wait(delay)
                delay = min(delay * 2, self._retry_max)

    def _publish(self) -> None:
        import psycopg

        conn: Any = None
        pending: set[str] = set()
        delay = 0.5
        try:
            while True:
                item = self._outbox.get()
                stop = item is _STOP
                if not stop:
                    pending.update(item)
                # Whatever else is queued goes in the same notifications.
                while not stop:
                    try:
                        more = self._outbox.get_nowait()
                    except queue.Empty:
                        break
                    if more is _STOP:
                        stop = True
                    else:
                        pending.update(more)
                if stop:
                    return
                try:
                    if conn is None:
                        conn = self._connect()
                    for payload in self._payloads(pending):
                        conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, payload))
                    pending.clear()
                    delay = 0.5
                except psycopg.Error as err:
                    if conn is not None:
                        conn.close()
                    conn = None
                    log.warning(
                        "nbflows: could not send wake-ups to other servers (%s); retrying in %.1f s",
                        _one_line(err),
                        delay,
                    )
                    # Kept in `pending`, sent with the next batch once the database answers.
                    if self._stopping.wait(delay):
                        return
                    delay = min(delay * 2, self._retry_max)
                    self._outbox.put(())
        finally:
            if conn is not None:
                conn.close()

    def _heard(self, payload: str) -> None:
        try:
            origin, *topics = json.loads(payload)
        except (ValueError, TypeError):  # not ours: someone else NOTIFYs on the channel
            return
        if origin != self.origin and topics:
            self._to_loop(self._deliver, [str(x) for x in topics])

    def _payloads(self, topics: set[str]) -> list[str]:
        """JSON lists `[origin, topic, ...]` (topics hold worker names: any text), each small
        enough for one NOTIFY."""
        out: list[str] = []
        batch: list[str] = [self.origin]
        size = len(json.dumps(batch))
        for topic in sorted(topics):
            grow = len(json.dumps(topic)) + 2
            if len(batch) > 1 and size + grow > MAX_PAYLOAD:
                out.append(json.dumps(batch))
                batch, size = [self.origin], len(json.dumps([self.origin]))
            batch.append(topic)
            size += grow
        if len(batch) > 1:
            out.append(json.dumps(batch))
        return out


def _one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__
