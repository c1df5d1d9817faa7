"""Cron schedules' occurrences: a cron expression (croniter) read once into a plan of wall times."""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from functools import lru_cache
from typing import Any

from nbflows.errors import InvalidInput
from nbflows.scheduling.walltime import (
    _ONE_DAY,
)

# --------------------------------------------------------------------------------------------
# Cron

_CRON_FIELDS = (
    ("minute", "0-59"),
    ("hour", "0-23"),
    ("day-of-month", "1-31, or L for the last day"),
    ("month", "1-12 or JAN-DEC"),
    ("day-of-week", "0-6 or SUN-SAT, 7 is Sunday too"),
)
_CRON_ALIASES = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")
_CRON_HELP = (
    "A cron expression has 5 fields, minute hour day-of-month month day-of-week, "
    "e.g. '0 6 * * *' (every day at 06:00) or '*/15 9-17 * * MON-FRI'"
)


@dataclass(eq=False)
class _CronPlan:
    """A parsed cron expression. Plain sets when possible, else a croniter to copy."""

    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: frozenset[int] | None  # None: any day of month
    months: frozenset[int] | None  # None: any month
    weekdays: frozenset[int] | None  # cron numbering, 0 = Sunday; None: any
    day_or: bool
    every_hour: bool
    template: Any = None  # a croniter for L, W and #, which the sets cannot express
    next_after: tuple[datetime, datetime] | None = field(default=None, repr=False)

    def walls(self, start: datetime, last: date) -> Iterator[datetime]:
        """Matching wall times from `start` (a whole minute) through the date `last`."""
        if self.template is not None:
            yield from self._croniter_walls(start, last)
            return
        day = start.date()
        min_hour, min_minute = start.hour, start.minute
        months, days, weekdays = self.months, self.days, self.weekdays
        while day <= last:
            if months is not None and day.month not in months:
                if day.month == 12:
                    day = date(day.year + 1, 1, 1)
                else:
                    day = date(day.year, day.month + 1, 1)
                min_hour = min_minute = 0
                continue
            if days is None:
                ok = weekdays is None or (day.weekday() + 1) % 7 in weekdays
            elif weekdays is None:
                ok = day.day in days
            elif self.day_or:
                ok = day.day in days or (day.weekday() + 1) % 7 in weekdays
            else:
                ok = day.day in days and (day.weekday() + 1) % 7 in weekdays
            if ok:
                for hour in self.hours:
                    if hour < min_hour:
                        continue
                    for minute in self.minutes:
                        if hour == min_hour and minute < min_minute:
                            continue
                        yield datetime(day.year, day.month, day.day, hour, minute)
            day += _ONE_DAY
            min_hour = min_minute = 0

    def _croniter_walls(self, start: datetime, last: date) -> Iterator[datetime]:
        from croniter import CroniterBadDateError

        # croniter takes ~30 us a step. These crons (last day, 2nd Friday...) are sparse, so
        # most scheduler passes find nothing: remembering the next match after the previous
        # query answers them without croniter.
        known = self.next_after
        if known is not None and known[0] <= start <= known[1]:
            if known[1].date() > last:
                return
            first = known[1]
        else:
            first = None
        # A shallow copy shares the parsed fields (never mutated) and skips re-parsing.
        it = copy.copy(self.template)
        it.set_current((first or start) - timedelta(seconds=1), force=True)
        while True:
            try:
                wall = it.get_next(datetime)
            except CroniterBadDateError:
                return
            if first is None:
                first = wall
                self.next_after = (start, wall)  # one assignment: safe to race
            if wall.date() > last:
                return
            yield wall


@lru_cache(maxsize=65536)
def _cron_plan(expression: str, day_or: bool) -> _CronPlan:
    from croniter import croniter

    text = " ".join(expression.split())
    if not text:
        raise InvalidInput(f"the cron expression is empty. {_CRON_HELP}.", field="cron")
    if text.startswith("@"):
        if text.lower() not in _CRON_ALIASES:
            raise InvalidInput(
                f"invalid cron expression {expression!r}: unknown alias; valid aliases are "
                f"{', '.join(_CRON_ALIASES)}. {_CRON_HELP}.",
                field="cron",
            )
    else:
        parts = text.split(" ")
        if len(parts) != 5:
            extra = " (seconds and years are not supported)" if len(parts) in (6, 7) else ""
            raise InvalidInput(
                f"invalid cron expression {expression!r}: it has {len(parts)} field"
                f"{'s' if len(parts) != 1 else ''}, not 5{extra}. {_CRON_HELP}.",
                field="cron",
            )
    try:
        expanded, nth = croniter.expand(text, strict=True)
    except Exception as exc:  # croniter raises ValueError, TypeError or its own errors
        raise InvalidInput(_cron_error(expression, text, exc), field="cron") from None

    minutes, hours, days, months, weekdays = expanded
    simple = not nth and all(v != "l" for part in expanded for v in part)
    if simple and not text.startswith("@"):
        day_field = text.split(" ")[2].lower()
        simple = "w" not in day_field and "l" not in day_field
    every_hour = hours == ["*"]

    def as_set(values: list[Any], size: int) -> frozenset[int] | None:
        if values == ["*"] or len(values) == size:
            return None
        return frozenset(int(v) for v in values)

    def as_tuple(values: list[Any], size: int) -> tuple[int, ...]:
        return tuple(range(size)) if values == ["*"] else tuple(sorted(int(v) for v in values))

    template = None
    if not simple:
        template = croniter(text, datetime(2000, 1, 1), day_or=day_or, ret_type=datetime)
    return _CronPlan(
        minutes=as_tuple(minutes, 60),
        hours=as_tuple(hours, 24),
        days=None if not simple else as_set(days, 31),
        months=None if not simple else as_set(months, 12),
        weekdays=None if not simple else as_set(weekdays, 7),
        day_or=day_or,
        every_hour=every_hour,
        template=template,
    )


def _cron_error(expression: str, text: str, exc: Exception) -> str:
    """Say which field is wrong: croniter's messages quote the whole expression only."""
    from croniter import croniter

    parts = text.split(" ")
    if len(parts) == 5:
        for index, (name, allowed) in enumerate(_CRON_FIELDS):
            probe = ["*"] * 5
            probe[index] = parts[index]
            try:
                croniter.expand(" ".join(probe))
            except Exception:
                return (
                    f"invalid cron expression {expression!r}: the {name} field {parts[index]!r} "
                    f"is not valid (use {allowed}; lists like 1,15, ranges like 1-5 and steps "
                    f"like */15 work too). {_CRON_HELP}."
                )
    detail = str(exc).splitlines()[-1] if str(exc) else type(exc).__name__
    detail = re.sub(r"^\[[^\]]*\] is not acceptable[.,]?\s*", "", detail) or "not valid"
    detail = detail[:1].lower() + detail[1:]
    return f"invalid cron expression {expression!r}: {detail}. {_CRON_HELP}."
