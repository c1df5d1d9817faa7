"""How runs look to a person, the same in the dashboard, the notebook widgets and the CLI:
state colours and badges, durations, timestamps.

Pure functions and constants (standard library only), so the core, the server extension and
the kernel-side widgets can all use them.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

__all__ = [
    "LATE_COLOUR",
    "STATE_COLOURS",
    "UNKNOWN_STATE_COLOUR",
    "change_text",
    "format_duration",
    "format_timestamp",
    "parse_timestamp",
    "state_badge",
]

#: Badge colour of each state type (the dashboard's CSS uses the same palette).
STATE_COLOURS = {
    "SCHEDULED": "#5c6bc0",
    "PENDING": "#78909c",
    "RUNNING": "#1e88e5",
    "COMPLETED": "#2e7d32",
    "FAILED": "#c62828",
    "CRASHED": "#d84315",
    "CANCELLING": "#8d6e63",
    "CANCELLED": "#757575",
    "PAUSED": "#f9a825",
}
#: A scheduled run past its start time (state name "Late").
LATE_COLOUR = "#ef6c00"
#: A state type not in `STATE_COLOURS`.
UNKNOWN_STATE_COLOUR = "#9e9e9e"


def state_badge(state: Mapping[str, Any] | None) -> str:
    """HTML of a coloured badge for a run's `state` (`{"type", "name", ...}`)."""
    state = state or {}
    kind = str(state.get("type") or "UNKNOWN")
    name = str(state.get("name") or kind.title())
    colour = LATE_COLOUR if name == "Late" else STATE_COLOURS.get(kind, UNKNOWN_STATE_COLOUR)
    return (
        f'<span class="nbflows-state" title="{html.escape(kind)}" style="background:{colour};'
        "color:white;border-radius:10px;padding:1px 8px;font-size:90%;font-weight:600;"
        f'white-space:nowrap">{html.escape(name)}</span>'
    )


def format_duration(seconds: float | str | None) -> str:
    """`0.25 s`, `12.3 s`, `4 min 05 s`, `2 h 03 min`; an em dash when unknown."""
    if seconds is None:
        return "—"
    seconds = float(seconds)
    if seconds < 10:
        return f"{seconds:.2f} s"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def parse_timestamp(value: datetime | str | None) -> datetime | None:
    """An API timestamp (ISO 8601, UTC) or a datetime as an aware datetime; None when there is
    none or it does not parse. Naive values are taken as UTC."""
    if not value:
        return None
    if isinstance(value, datetime):
        moment = value
    else:
        try:
            moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            return None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def format_timestamp(value: datetime | str | None, *, seconds: bool = True) -> str:
    """`2024-05-01 06:00:03 UTC` from an API timestamp; an em dash when there is none."""
    moment = parse_timestamp(value)
    if moment is None:
        return "—"
    fmt = "%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M"
    return moment.astimezone(timezone.utc).strftime(fmt) + " UTC"


def change_text(change: Mapping[str, Any]) -> str:
    """One change a re-deploy made (`{"field", "old", "new"}` of the deploy answer), in words."""
    return f"{change.get('field')}: {change.get('old')} → {change.get('new')}"
