"""Waiting in tests for something a server, a worker or a widget does in the background."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import pytest

T = TypeVar("T")


def wait_for(check: Callable[[], T | None], what: str, timeout: float = 60) -> T:
    """Poll `check` until it returns something truthy and return that; fail the test with
    `what` after `timeout` s (a safety limit, not a timing assertion)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.1)
