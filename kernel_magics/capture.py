"""Turning what a flow run prints and logs into log lines, without changing what the cell shows.

While at least one run captures, `sys.stdout` and `sys.stderr` are replaced by routers that write
everything through to the stream they replaced (so the cell shows output exactly as before) and
hand a copy to each capturing run; a handler on the root logger does the same for `logging`
records. The routers are installed by the first capture and removed by the last one, under a
lock, so overlapping runs (a flow calling a flow, a served run on another thread) never restore a
stream out of order.

A log line is a dict `{"timestamp": epoch seconds (float), "level": int, "message": str,
"source": "stdout" | "stderr" | "logging"}`; reporters turn the timestamp into ISO 8601 when they
send it, which keeps this path (run for every printed line) cheap.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Any, TextIO

__all__ = ["LogLine", "RunCapture"]

LogLine = dict[str, Any]
LineSink = Callable[[list[LogLine]], None]

_STREAM_LEVELS = {"stdout": logging.INFO, "stderr": logging.WARNING}
_lock = threading.Lock()
# Set while a thread re-emits a logging record to stderr: that record is captured already.
_echoing = threading.local()


class RunCapture:
    """Captures output as log lines for one run while entered; complete lines go to `sink`.

    `prints=False` leaves stdout/stderr alone and captures only `logging` records. With
    `thread=None` output from every thread is captured (the kernel shows it in the running cell
    anyway); with a thread id, only output of that thread (a run on a background thread must not
    swallow what the user's cells print meanwhile). Logging records are captured at the levels
    the user's logging configuration lets through: capturing changes no logger's level.
    """

    def __init__(self, sink: LineSink, *, prints: bool = True, thread: int | None = None) -> None:
        self._sink = sink
        self._prints = prints
        self._thread = thread
        self._partial = {"stdout": "", "stderr": ""}
        self._routers: list[_StreamRouter] = []

    def __enter__(self) -> RunCapture:
        with _lock:
            if self._prints:
                self._routers = [_attach_stream("stdout", self), _attach_stream("stderr", self)]
            _log_router.attach(self)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        with _lock:
            for router in self._routers:
                _detach_stream(router, self)
            _log_router.detach(self)
        self._routers = []
        # A last line without a newline (`print(x, end="")`) is still a line of the run.
        for source, rest in self._partial.items():
            if rest:
                self._emit(source, [rest])
        self._partial = {"stdout": "", "stderr": ""}

    def feed(self, source: str, text: str) -> None:
        """Text written to `source` ("stdout" or "stderr"); called by the stream routers."""
        if self._thread is not None and threading.get_ident() != self._thread:
            return
        buffered = self._partial[source] + text
        if "\n" not in buffered:
            self._partial[source] = _last_rewrite(buffered)
            return
        *complete, rest = buffered.split("\n")
        self._partial[source] = _last_rewrite(rest)
        self._emit(source, complete)

    def record(self, record: logging.LogRecord, message: str) -> None:
        """A logging record (already formatted as `message`); called by the root handler."""
        if self._thread is not None and record.thread != self._thread:
            return
        self._sink(
            [
                {
                    "timestamp": record.created,
                    "level": record.levelno,
                    "message": message,
                    "source": "logging",
                }
            ]
        )

    def _emit(self, source: str, lines: Iterable[str]) -> None:
        now = time.time()
        level = _STREAM_LEVELS[source]
        self._sink(
            [
                {"timestamp": now, "level": level, "message": _shown_text(line), "source": source}
                for line in lines
            ]
        )


def _shown_text(line: str) -> str:
    # A progress bar rewrites its line with "\r": the log keeps what a terminal would show last.
    line = line.rstrip("\r")
    return line.rpartition("\r")[2] if "\r" in line else line


def _last_rewrite(partial: str) -> str:
    # Keeps the buffer of an endlessly rewritten line (a progress bar) from growing.
    _, sep, tail = partial.rpartition("\r")
    return tail if sep and tail else partial


class _StreamRouter:
    """Stands in for `sys.stdout`/`sys.stderr`: writes through, and copies to capturing runs."""

    def __init__(self, stream: TextIO, source: str) -> None:
        self.stream = stream
        self.source = source
        # Replaced, never mutated, so `write` iterates without taking the lock.
        self.captures: tuple[RunCapture, ...] = ()

    def write(self, text: str) -> int:
        written = self.stream.write(text)
        if self.captures and not getattr(_echoing, "active", False):
            for capture in self.captures:
                capture.feed(self.source, text)
        return written

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str) -> Any:
        # flush, fileno, isatty, encoding, ipykernel's own attributes...: the real stream's.
        return getattr(self.stream, name)


def _attach_stream(source: str, capture: RunCapture) -> _StreamRouter:
    current = getattr(sys, source)
    if isinstance(current, _StreamRouter):
        router = current
    else:
        router = _StreamRouter(current, source)
        setattr(sys, source, router)
    router.captures = (*router.captures, capture)
    return router


def _detach_stream(router: _StreamRouter, capture: RunCapture) -> None:
    router.captures = tuple(c for c in router.captures if c is not capture)
    # Put the stream back only if nobody replaced the router meanwhile; otherwise the router
    # stays where it is, as a plain pass-through.
    if not router.captures and getattr(sys, router.source) is router:
        setattr(sys, router.source, router.stream)


class _LogRouter(logging.Handler):
    """The root-logger handler of every capturing run; installed while one captures."""

    def __init__(self) -> None:
        super().__init__()
        self.captures: tuple[RunCapture, ...] = ()
        self._formatter = logging.Formatter()

    def attach(self, capture: RunCapture) -> None:
        if not self.captures:
            logging.root.addHandler(self)
        self.captures = (*self.captures, capture)

    def detach(self, capture: RunCapture) -> None:
        self.captures = tuple(c for c in self.captures if c is not capture)
        if not self.captures:
            logging.root.removeHandler(self)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
            if record.exc_info:
                message = f"{message}\n{self._formatter.formatException(record.exc_info)}"
            if record.name != "root":
                message = f"{record.name}: {message}"
            for capture in self.captures:
                capture.record(record, message)
        except Exception:
            self.handleError(record)
        _show_like_python(record)


def _show_like_python(record: logging.LogRecord) -> None:
    """Print `record` to stderr if Python would have, had this handler not been installed.

    With no handler configured anywhere, Python shows WARNING and above through
    `logging.lastResort`; the mere presence of the capture handler would silence that.
    """
    last_resort = logging.lastResort
    if last_resort is None or record.levelno < last_resort.level:
        return
    logger: logging.Logger | None = (
        logging.root if record.name == "root" else logging.getLogger(record.name)
    )
    while logger is not None:
        if any(handler is not _log_router for handler in logger.handlers):
            return
        if not logger.propagate:
            break
        logger = logger.parent
    _echoing.active = True
    try:
        last_resort.handle(record)
    finally:
        _echoing.active = False


_log_router = _LogRouter()
