"""RFC 5545 rrule schedules' occurrences (dateutil), in wall time of the schedule's zone."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from functools import lru_cache
from heapq import merge
from typing import Any
from zoneinfo import ZoneInfo

from nbflows.errors import InvalidInput
from nbflows.scheduling.walltime import (
    _MAX_YEARS,
    DEFAULT_ANCHOR,
    _zone,
)

# --------------------------------------------------------------------------------------------
# RRule

_RRULE_HELP = (
    "An rrule is RFC 5545 text such as 'FREQ=DAILY;BYHOUR=6;BYMINUTE=0', optionally with a "
    "'DTSTART:20240101T060000' line before an 'RRULE:...' line; COUNT and UNTIL are allowed"
)
_TZID_RE = re.compile(r"DTSTART;[^:\n]*TZID=([^:;\n]+)", re.IGNORECASE)
# dateutil's WEEKLY, DAILY, HOURLY, MINUTELY, SECONDLY: periods of fixed wall-clock length.
_FIXED_PERIODS = {
    2: timedelta(weeks=1),
    3: timedelta(days=1),
    4: timedelta(hours=1),
    5: timedelta(minutes=1),
    6: timedelta(seconds=1),
}
# How many periods a cached, shifted rule may lag behind a query before it is rebuilt.
_SHIFT_SLACK = 8


@dataclass(eq=False)
class _WallRule:
    """One RRULE on naive wall times, plus a cache of it moved close to recent queries.

    dateutil iterates every rrule from its DTSTART, so "every 15 minutes since 2020" costs
    200,000 steps per query. Without COUNT, moving DTSTART forward by whole periods (whole
    years for MONTHLY and YEARLY) gives the same times after the new start; the moved rule is
    kept until queries run ahead of it.
    """

    rule: Any
    dtstart: datetime
    period: timedelta | None  # fixed wall-clock period x INTERVAL, when movable by it
    years: int | None  # whole-year step, for MONTHLY and YEARLY without COUNT
    moved: tuple[int, Any] | None = field(default=None, repr=False)

    def walls(self, start: datetime) -> Iterator[datetime]:
        rule = self._near(start)
        for wall in rule:
            if wall >= start:
                yield wall

    def _near(self, start: datetime) -> Any:
        if start <= self.dtstart:
            return self.rule
        if self.period is not None:
            steps = (start - self.dtstart) // self.period
        elif self.years is not None:
            steps = (start.year - self.dtstart.year - 1) // self.years
        else:
            return self.rule
        if steps <= 0:
            return self.rule
        moved = self.moved
        if moved is not None and 0 <= steps - moved[0] < _SHIFT_SLACK:
            return moved[1]
        try:
            if self.period is not None:
                new_start = self.dtstart + steps * self.period
            else:
                assert self.years is not None
                new_start = self.dtstart.replace(year=self.dtstart.year + steps * self.years)
        except (ValueError, OverflowError):  # Feb 29th in a common year, or past year 9999
            return self.rule
        rule = self.rule.replace(dtstart=new_start)
        self.moved = (steps, rule)  # one assignment: safe to race, both values are right
        return rule


@dataclass(frozen=True)
class _RRulePlan:
    rules: tuple[_WallRule, ...]
    rdates: tuple[datetime, ...]  # sorted wall times
    exdates: frozenset[datetime]
    every_hour: bool

    def walls(self, start: datetime, last: date) -> Iterator[datetime]:
        streams: list[Iterable[datetime]] = [rule.walls(start) for rule in self.rules]
        streams.append(d for d in self.rdates if d >= start)
        previous = None
        for wall in merge(*streams):
            if wall.date() > last:
                return
            if wall == previous or wall in self.exdates:
                continue
            previous = wall
            yield wall


def _tzid_lookup(name: str) -> ZoneInfo:
    try:
        return _zone(name)
    except InvalidInput as exc:
        raise InvalidInput(f"in the rrule's TZID: {exc.message}", field="rrule") from None


def _to_wall(value: datetime, tz: ZoneInfo) -> datetime:
    if value.tzinfo is None:
        return value
    return value.astimezone(tz).replace(tzinfo=None)


@lru_cache(maxsize=16384)
def _rrule_plan(text: str, zone_name: str) -> _RRulePlan:
    from dateutil.rrule import HOURLY, MONTHLY, YEARLY, rrulestr

    if not text.strip():
        raise InvalidInput(f"the rrule is empty. {_RRULE_HELP}.", field="rrule")
    tz = _zone(zone_name)
    ruleset = None
    problem: Exception | None = None
    # An aware default start lets UNTIL be UTC ('...Z'); a naive UNTIL needs a naive start.
    for default_start in (DEFAULT_ANCHOR.replace(tzinfo=tz), DEFAULT_ANCHOR):
        try:
            ruleset = rrulestr(
                text,
                dtstart=default_start,
                forceset=True,
                unfold=True,
                tzids=_tzid_lookup,
                cache=False,
            )
            break
        except InvalidInput:
            raise
        except Exception as exc:  # dateutil raises ValueError, TypeError, IndexError...
            problem = problem or exc
    if ruleset is None:
        detail = str(problem) or type(problem).__name__
        if "unpack" in detail:  # dateutil's words for a part without '='
            detail = "expected NAME=VALUE parts separated by ';'"
        raise InvalidInput(f"invalid rrule {text!r}: {detail}. {_RRULE_HELP}.", field="rrule")
    # dateutil keeps a set's parts in these attributes (unchanged since 2.0); reading them lets
    # the rules be rebuilt on the schedule's wall clock.
    if ruleset._exrule:
        raise InvalidInput(
            f"invalid rrule {text!r}: EXRULE is not supported (RFC 5545 deprecates it); use EXDATE",
            field="rrule",
        )
    rules: list[_WallRule] = []
    for rule in ruleset._rrule:
        start = _to_wall(rule._dtstart, tz)
        until = rule._until if rule._until is None else _to_wall(rule._until, tz)
        try:
            wall_rule = rule.replace(dtstart=start, until=until)
            probe = wall_rule.replace(count=None, until=_probe_end(start, until))
            first = next(iter(probe), None)
        except Exception as exc:
            raise InvalidInput(
                f"invalid rrule {text!r}: {exc}. {_RRULE_HELP}.", field="rrule"
            ) from None
        if first is None:
            ended = f" or before its UNTIL {until:%Y-%m-%d %H:%M}" if until else ""
            raise InvalidInput(
                f"invalid rrule {text!r}: it never produces a time (none in the {_MAX_YEARS} "
                f"years after its start {start:%Y-%m-%d %H:%M}{ended}). {_RRULE_HELP}.",
                field="rrule",
            )
        period = years = None
        if rule._count is None:
            if rule._freq in _FIXED_PERIODS:
                period = _FIXED_PERIODS[rule._freq] * rule._interval
            elif rule._freq == YEARLY:
                years = rule._interval
            elif rule._freq == MONTHLY:
                years = math.lcm(rule._interval, 12) // 12
            if years is not None and (start.month, start.day) == (2, 29):
                years = math.lcm(years, 4)
        rules.append(_WallRule(wall_rule, start, period, years))
    rdates = tuple(sorted(_to_wall(d, tz) for d in ruleset._rdate))
    if not rules and not rdates:
        raise InvalidInput(
            f"invalid rrule {text!r}: it has no RRULE or RDATE. {_RRULE_HELP}.", field="rrule"
        )
    return _RRulePlan(
        rules=tuple(rules),
        rdates=rdates,
        exdates=frozenset(_to_wall(d, tz) for d in ruleset._exdate),
        every_hour=bool(rules) and all(r.rule._freq >= HOURLY for r in rules),
    )


def _probe_end(start: datetime, until: datetime | None) -> datetime:
    try:
        end = start.replace(year=start.year + _MAX_YEARS)
    except ValueError:  # Feb 29th
        end = start.replace(year=start.year + _MAX_YEARS, day=28)
    return end if until is None else min(end, until)
