"""Serving a flow from the kernel (`Flow.serve`): a loop that creates its scheduled runs and runs
them in this kernel, and the handle that stops it.
"""

from __future__ import annotations

import sys
import threading
import traceback
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import asyncio

    from IPython.core.interactiveshell import InteractiveShell

    from nbflows.kernel_magics.flow import Flow
    from nbflows.scheduling.schedules import Schedule

__all__ = ["ServeHandle"]


# --------------------------------------------------------------------------------------------
# Serving


def kernel_loop(
    shell: InteractiveShell,
) -> tuple[asyncio.AbstractEventLoop | None, asyncio.Lock | None]:
    """The kernel's event loop (None outside ipykernel) and the lock its cells run under.

    ipykernel runs each cell holding `kernel._main_asyncio_lock`; a served run takes the same
    lock, so it never starts while a cell (even an async one) is running. That attribute is
    private: without it, a served run still waits for synchronous cells, which hold the loop.
    """
    import asyncio

    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return None, None
    lock = getattr(getattr(shell, "kernel", None), "_main_asyncio_lock", None)
    return loop, lock if isinstance(lock, asyncio.Lock) else None


class ServeHandle:
    """A flow served on its schedules inside this kernel; `stop()` ends serving.

    A thread sleeps until the next scheduled time, then has the flow run (on the kernel's main
    thread when there is a kernel event loop, see `Flow.serve`) and waits for it to finish
    before looking at the schedule again; so runs never overlap, and times missed while a run
    (or a long cell) went on are skipped, not caught up.
    """

    def __init__(
        self,
        flow: Flow,
        schedules: list[Schedule],
        parameters: dict[str, Any],
        loop: asyncio.AbstractEventLoop | None = None,
        kernel_lock: asyncio.Lock | None = None,
    ) -> None:
        self.flow = flow
        self.schedules = schedules
        self.parameters = parameters
        #: When the next run is due (aware UTC), None once serving has stopped.
        self.next_run: datetime | None = None
        #: How many runs were started.
        self.run_count = 0
        self._loop = loop
        self._kernel_lock = kernel_lock
        self._stopped = threading.Event()
        self._thread = threading.Thread(
            target=self._serve, name=f"nbflows-serve-{flow.name}", daemon=True
        )
        self._thread.start()

    def __repr__(self) -> str:
        if not self.running:
            return f"<ServeHandle {self.flow.name!r}: stopped after {self.run_count} runs>"
        when = self.next_run.isoformat(" ", "seconds") if self.next_run else "soon"
        return (
            f"<ServeHandle {self.flow.name!r}: {self.run_count} runs so far, next at {when}; "
            ".stop() to end>"
        )

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def stop(self, timeout: float | None = 30.0) -> None:
        """Stop serving; a run in progress finishes first (waits up to `timeout` seconds)."""
        self._stopped.set()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    def _serve(self) -> None:
        last_due: datetime | None = None
        while not self._stopped.is_set():
            now = datetime.now(timezone.utc)
            after = max(now, last_due) if last_due is not None else now
            due = [
                t
                for schedule in self.schedules
                for t in schedule.next_times(after, after + timedelta(days=400), limit=1)
            ]
            if not due:
                break
            self.next_run = last_due = min(due)
            if self._stopped.wait((self.next_run - now).total_seconds()):
                break
            if not self._run_once():
                break
        self.next_run = None

    def _run_once(self) -> bool:
        """Run the flow once; False when the kernel's loop is gone (the kernel is stopping)."""
        self.run_count += 1
        if self._loop is None:
            error = self._call()
        else:
            import asyncio

            try:
                future = asyncio.run_coroutine_threadsafe(self._call_on_loop(), self._loop)
            except RuntimeError:
                return False
            error = future.result()
        if error is not None:
            # The run's failure is recorded with its traceback; serving goes on.
            summary = traceback.format_exception_only(type(error), error)[-1].strip()
            print(
                f"nbflows: served run of flow {self.flow.name!r} failed: {summary}", file=sys.stderr
            )
        return True

    async def _call_on_loop(self) -> BaseException | None:
        if self._kernel_lock is None:
            return self._call()
        async with self._kernel_lock:
            return self._call()

    def _call(self) -> BaseException | None:
        # Returned, not raised: a KeyboardInterrupt raised out of a task would stop the loop.
        try:
            self.flow(**self.parameters)
        except BaseException as exc:
            return exc
        return None
