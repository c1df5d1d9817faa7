"""Schemathesis hooks for the API fuzz run (loaded through SCHEMATHESIS_HOOKS).

Long-polls (`wait` of claims, heartbeats and log reads) would hold each request up to 30 s: a
valid wait is shortened to keep the run fast. Their waiting is tested in tests/test_api.py.
"""

from __future__ import annotations

from typing import Any

import schemathesis

SHORT_WAIT = 0.2


def _shorter(value: Any) -> Any:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return value
    if isinstance(value, bool) or not 0 <= seconds <= 30:
        return value  # not a valid wait: left as it is, to be refused
    return min(seconds, SHORT_WAIT) if not isinstance(value, str) else str(min(seconds, SHORT_WAIT))


@schemathesis.hook
def before_call(ctx: Any, case: Any, kwargs: dict[str, Any]) -> None:
    if isinstance(case.body, dict) and "wait" in case.body:
        case.body["wait"] = _shorter(case.body["wait"])
    if isinstance(case.query, dict) and "wait" in case.query:
        case.query["wait"] = _shorter(case.query["wait"])
