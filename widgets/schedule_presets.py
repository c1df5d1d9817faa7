"""The schedules a deploy form offers: cron and interval presets (the last of each lets the user
type their own), the time zones, and a moment shown in a zone.
"""

from __future__ import annotations

from typing import Any

from nbflows.presentation import format_timestamp, parse_timestamp

__all__ = ["CRON_PRESETS", "INTERVAL_PRESETS"]

CUSTOM = "custom"

#: (label, cron expression); the last one lets the user type an expression.
CRON_PRESETS: list[tuple[str, str]] = [
    ("every hour", "0 * * * *"),
    ("every day at 06:00", "0 6 * * *"),
    ("weekdays at 09:00", "0 9 * * 1-5"),
    ("Mondays at 06:00", "0 6 * * 1"),
    ("1st of the month at 06:00", "0 6 1 * *"),
    ("custom…", CUSTOM),
]

#: (label, seconds); the last one lets the user type a number of seconds.
INTERVAL_PRESETS: list[tuple[str, Any]] = [
    ("every 5 minutes", 300),
    ("every 15 minutes", 900),
    ("every hour", 3600),
    ("every 6 hours", 21600),
    ("every day", 86400),
    ("custom…", CUSTOM),
]


def timezones() -> list[str]:
    from zoneinfo import available_timezones

    return ["UTC", *sorted(available_timezones() - {"UTC"})]


def in_zone(value: str | None, zone: str) -> str:
    from zoneinfo import ZoneInfo

    moment = parse_timestamp(value)
    if moment is None:
        return format_timestamp(value)
    try:
        return moment.astimezone(ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M %Z")
    except (KeyError, ValueError):
        return format_timestamp(value)
