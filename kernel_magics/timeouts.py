"""A flow's parameters and time limit inside the kernel: parameters overridden for one call, and a
`timeout` enforced with an alarm on the main thread (an exception injected elsewhere), raised as
`FlowTimeout`.
"""

from __future__ import annotations

import ctypes
import signal
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, nullcontext
from functools import partial
from typing import Any

from nbflows.kernel_magics.reporting import FlowRunRecord

__all__ = ["FlowTimeout"]

_MISSING = object()


class FlowTimeout(TimeoutError):
    """An attempt ran longer than the flow's `--timeout`."""

    #: The run whose limit expired: a flow called inside another may see its caller's timeout,
    #: which must fail the caller, not be retried by the callee.
    run_key: str | None = None


# --------------------------------------------------------------------------------------------
# Parameters, timeouts


@contextmanager
def parameters_overridden(namespace: dict[str, Any], values: Mapping[str, Any]) -> Iterator[None]:
    """Set `values` in `namespace` for the block; then restore what the flow did not rebind."""
    if not values:
        yield
        return
    saved = {name: namespace.get(name, _MISSING) for name in values}
    namespace.update(values)
    try:
        yield
    finally:
        for name, old in saved.items():
            if namespace.get(name, _MISSING) is values[name]:
                if old is _MISSING:
                    namespace.pop(name, None)
                else:
                    namespace[name] = old


def time_limit(seconds: float | None, flow_name: str, run_key: str) -> Any:
    """A context manager interrupting its block with `FlowTimeout` after `seconds`.

    On the main thread a SIGALRM timer raises in the running code, even inside `time.sleep` or a
    blocking read; elsewhere the exception is injected into the thread, which sees it at its next
    Python instruction (not while blocked inside C code).
    """
    if seconds is None:
        return nullcontext()
    message = f"flow {flow_name!r} timed out after {seconds:g} s (--timeout {seconds:g})"
    if threading.current_thread() is threading.main_thread() and hasattr(signal, "setitimer"):
        return _alarm(seconds, message, run_key)
    return _injected_timeout(seconds, message, run_key)


def _raise_timeout(message: str, run_key: str, signum: int, frame: Any) -> None:
    exc = FlowTimeout(message)
    exc.run_key = run_key
    raise exc


def someone_elses_timeout(exc: BaseException, run: FlowRunRecord) -> bool:
    return isinstance(exc, FlowTimeout) and exc.run_key not in (None, run.key)


@contextmanager
def _alarm(seconds: float, message: str, run_key: str) -> Iterator[None]:
    outer_delay, outer_interval = signal.getitimer(signal.ITIMER_REAL)
    if outer_delay and outer_delay <= seconds:
        # An enclosing limit (an outer flow's, pytest-timeout's) fires first anyway.
        yield
        return
    previous = signal.signal(signal.SIGALRM, partial(_raise_timeout, message, run_key))
    signal.setitimer(signal.ITIMER_REAL, seconds)
    started = time.monotonic()
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        if outer_delay:
            remaining = outer_delay - (time.monotonic() - started)
            signal.setitimer(signal.ITIMER_REAL, max(remaining, 0.001), outer_interval)


@contextmanager
def _injected_timeout(seconds: float, message: str, run_key: str) -> Iterator[None]:
    target = threading.get_ident()
    lock = threading.Lock()
    state = {"done": False, "fired": False}

    def fire() -> None:
        with lock:
            if not state["done"]:
                state["fired"] = True
                ctypes.pythonapi.PyThreadState_SetAsyncExc(
                    ctypes.c_ulong(target), ctypes.py_object(FlowTimeout)
                )

    timer = threading.Timer(seconds, fire)
    timer.daemon = True
    timer.start()
    try:
        yield
    except FlowTimeout as exc:
        if state["fired"] and not exc.args:  # ours, injected as a bare class
            exc.args = (message,)
            exc.run_key = run_key
        raise
    finally:
        timer.cancel()
        with lock:
            state["done"] = True
            if state["fired"]:  # fired just as the block ended: withdraw it if still pending
                ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(target), None)


def drop_alarm_frame(exc: BaseException) -> None:
    # The SIGALRM handler raised the timeout; the user's interrupted line is the frame to show.
    if not isinstance(exc, FlowTimeout) or exc.__traceback__ is None:
        return
    tb = exc.__traceback__
    while tb.tb_next is not None and tb.tb_next.tb_next is not None:
        tb = tb.tb_next
    if tb.tb_next is not None and tb.tb_next.tb_frame.f_code is _raise_timeout.__code__:
        tb.tb_next = None
