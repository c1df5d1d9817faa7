"""Schedules of deployments: cron, interval and RFC 5545 rrule, each in an IANA time zone.

A schedule answers one question for the scheduler: which times fall in `(after, until]`?
Times are computed on the wall clock of the schedule's time zone and returned as aware UTC
datetimes. Daylight-saving transitions follow rules close to classic (Vixie) cron's:

- a wall time that does not exist (the hour skipped in spring) runs once, shifted forward by the
  length of the gap (02:30 becomes 03:30) -- unless the schedule fires every hour, where the
  skipped times are simply skipped, so an hourly job stays hourly in real time;
- a wall time that occurs twice (the hour repeated in autumn) runs once, at its first
  occurrence -- unless the schedule fires every hour, where it runs at both, so an
  "every 15 minutes" job keeps running every 15 minutes.

"Fires every hour" means a cron whose hour field is `*`, or an rrule whose FREQ is HOURLY or
finer. Interval schedules whose interval is a whole number of days keep their wall-clock time
(every 1d from 06:00 stays at 06:00 local); other intervals are exact elapsed time.

Everything a user can get wrong raises `nbflows.errors.InvalidInput` with a message saying what is
valid: from `parse_schedule`, from `make_schedule` and from direct construction.
"""

from __future__ import annotations

import contextlib
import copy
import difflib
import hashlib
import json
import math
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from functools import cache, lru_cache
from heapq import merge
from itertools import pairwise
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal
from zoneinfo import ZoneInfo, available_timezones

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from nbflows.errors import InvalidInput

__all__ = [
    "CronSchedule",
    "IntervalSchedule",
    "RRuleSchedule",
    "Schedule",
    "make_schedule",
    "parse_schedule",
    "schedule_to_dict",
    "shortest_gap",
]

UTC = timezone.utc
_ZERO = timedelta(0)
_ONE_DAY = timedelta(days=1)
_EPOCH = datetime(1970, 1, 1)
#: Phase of interval schedules and start of rrules that do not give one: midnight, Jan 1st 2020,
#: on the schedule's wall clock (the same default as Prefect's, so its users get the same times).
DEFAULT_ANCHOR = datetime(2020, 1, 1)
#: How far ahead a schedule must have a first time to be accepted (and cron's own limit).
_MAX_YEARS = 50
_MAX_INTERVAL = 100 * 366 * 86400.0
_US = 1_000_000
_DAY_US = 86400 * _US
# Wall times past this are not computed: datetime arithmetic near year 9999 overflows.
_WALL_MIN = datetime(1900, 1, 1)
_WALL_MAX = datetime(9990, 1, 1)
_UTC_NAMES = frozenset({"UTC", "Etc/UTC", "Etc/UCT", "UCT", "Etc/Universal", "Universal", "Zulu"})

KINDS = ("cron", "interval", "rrule")
_EXAMPLES = {
    "cron": "cron='0 6 * * *' (every day at 06:00)",
    "interval": "interval=3600 (seconds, or a timedelta)",
    "rrule": "rrule='FREQ=WEEKLY;BYDAY=MO;BYHOUR=6;BYMINUTE=0'",
}


# --------------------------------------------------------------------------------------------
# Time zones


@cache
def _all_zone_names() -> tuple[str, ...]:
    return tuple(sorted(available_timezones()))


@lru_cache(maxsize=4096)
def _zone(name: str) -> ZoneInfo:
    """The ZoneInfo of an IANA name, or InvalidInput with a suggestion."""
    try:
        return ZoneInfo(name)
    except (KeyError, ValueError, OSError):  # not found, not a valid key, a directory
        pass
    raise InvalidInput(_unknown_zone_message(name), field="timezone", value=name)


def _unknown_zone_message(name: str) -> str:
    names = _all_zone_names()
    by_lower = {n.lower(): n for n in names}
    guess = by_lower.get(str(name).lower())
    close = [guess] if guess else difflib.get_close_matches(str(name), names, n=1, cutoff=0.75)
    hint = f"did you mean '{close[0]}'? " if close else ""
    return (
        f"unknown timezone {name!r}: {hint}Use an IANA time zone name such as "
        "'Europe/Paris', 'America/New_York' or 'UTC'"
    )


def _is_utc(name: str) -> bool:
    return name in _UTC_NAMES


# --------------------------------------------------------------------------------------------
# From wall-clock times to UTC instants


def _utc_naive(value: datetime) -> datetime:
    """An aware or naive (= UTC) datetime as a naive UTC datetime."""
    if value.tzinfo is None:
        return value
    return value.astimezone(UTC).replace(tzinfo=None)


def _start_wall(after: datetime, tz: ZoneInfo | None) -> datetime:
    """The first wall time (whole minute) that can map to an instant after `after` (naive UTC).

    When `after` lies in the first pass of a repeated hour, wall times just before it still
    have their second occurrence ahead, so the start goes back by the repeated length.
    """
    if tz is None:
        return after.replace(second=0, microsecond=0)
    local = after.replace(tzinfo=UTC).astimezone(tz)
    wall = local.replace(tzinfo=None, second=0, microsecond=0)
    if local.fold == 0:
        now = local.utcoffset() or _ZERO
        second = local.replace(fold=1).utcoffset() or _ZERO
        if second < now:
            wall -= now - second
    return wall


def _last_wall_date(until: datetime, tz: ZoneInfo | None) -> date:
    """No wall time on a later date can map to an instant <= `until` (naive UTC)."""
    if until >= _WALL_MAX:
        return _WALL_MAX.date()
    wall = until if tz is None else until.replace(tzinfo=UTC).astimezone(tz).replace(tzinfo=None)
    # Two days of slack cover every UTC offset change there has been (Samoa skipped a whole day).
    return (wall + 2 * _ONE_DAY).date()


@lru_cache(maxsize=65536)
def _day_offset(tz: ZoneInfo, day: date) -> timedelta | None:
    """The UTC offset of a whole wall-clock day, or None on a day with a transition.

    Same offset (and no ambiguity) at both midnights means none in between: zones change at
    most once a day. This spares two offset look-ups per wall time on the other 363 days.
    """
    start = datetime(day.year, day.month, day.day)
    offsets = {
        (wall.replace(tzinfo=tz, fold=fold).utcoffset() or _ZERO)
        for wall in (start, start + _ONE_DAY)
        for fold in (0, 1)
    }
    return offsets.pop() if len(offsets) == 1 else None


def _collect(
    walls: Iterable[datetime],
    tz: ZoneInfo | None,
    every_hour: bool,
    after: datetime,
    until: datetime,
    limit: int,
) -> list[datetime]:
    """Map ordered wall times to the UTC instants in (after, until], at most `limit` of them.

    `after` and `until` are naive UTC. Outside DST transitions the instants come in order and the
    loop stops at the first one past `until`; around a transition (a repeated or skipped hour)
    they may not, so the loop only ever stops on an ordinary wall time, after which every later
    wall time maps to a later instant.
    """
    found: list[datetime] = []
    high: datetime | None = None
    unordered = False
    day = None
    day_offset: timedelta | None = _ZERO
    for wall in walls:
        if tz is not None and wall.date() != day:
            day = wall.date()
            day_offset = _day_offset(tz, day)
        if day_offset is not None:
            offset = second = day_offset
        else:
            assert tz is not None
            offset = wall.replace(tzinfo=tz).utcoffset() or _ZERO
            second = wall.replace(tzinfo=tz, fold=1).utcoffset() or _ZERO
        if offset == second:
            instant = wall - offset
            if instant > until:
                break
            if instant > after:
                found.append(instant)
                if high is None or instant > high:
                    high = instant
                if len(found) >= limit and instant >= high:
                    break
            continue
        unordered = True
        if offset > second:  # repeated: first occurrence (and the second if hourly)
            candidates: tuple[datetime, ...] = (
                (wall - offset, wall - second) if every_hour else (wall - offset,)
            )
        else:  # skipped: shift forward by the gap, or drop if hourly
            candidates = () if every_hour else (wall - offset,)
        for instant in candidates:
            if after < instant <= until:
                found.append(instant)
                if high is None or instant > high:
                    high = instant
    if unordered:
        found = sorted(set(found))
    return [instant.replace(tzinfo=UTC) for instant in found[:limit]]


def _fixed_time_walls(first: datetime, step: timedelta) -> Iterator[datetime]:
    wall = first
    while wall < _WALL_MAX:
        yield wall
        wall += step


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


# --------------------------------------------------------------------------------------------
# Interval


def _interval_seconds(value: Any) -> float:
    """Seconds from a number, a timedelta, or a string ('3600', 'PT1H30M', '01:30:00')."""
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise InvalidInput(
            f"interval must be a number of seconds or a timedelta, got {value!r}; "
            "e.g. interval=3600 for every hour",
            field="interval",
        )
    elif isinstance(value, str):
        try:
            seconds = float(value)
        except ValueError:
            try:
                seconds = TypeAdapter(timedelta).validate_python(value).total_seconds()
            except ValidationError:
                raise InvalidInput(
                    f"interval {value!r} is not a number of seconds or a duration like "
                    "'PT1H30M'; e.g. interval=3600 for every hour",
                    field="interval",
                ) from None
    else:
        seconds = float(value)
    if not math.isfinite(seconds) or seconds <= 0:
        raise InvalidInput(
            f"interval must be a positive number of seconds, got {value!r}; "
            "e.g. interval=3600 for every hour",
            field="interval",
        )
    if round(seconds * _US) < 1:
        raise InvalidInput(
            f"interval must be at least 1 microsecond, got {value!r}", field="interval"
        )
    if seconds > _MAX_INTERVAL:
        raise InvalidInput(
            f"interval must be at most 100 years ({_MAX_INTERVAL:.0f} s), got {value!r}",
            field="interval",
        )
    return seconds


def _format_duration(seconds: float) -> str:
    """1h30m, 1d, 45s, 0.5s, 2d3h0m4s -> compact, exact to the microsecond."""
    rest = round(seconds * _US)
    days, rest = divmod(rest, _DAY_US)
    hours, rest = divmod(rest, 3600 * _US)
    minutes, rest = divmod(rest, 60 * _US)
    parts = [f"{n}{unit}" for n, unit in ((days, "d"), (hours, "h"), (minutes, "m")) if n]
    if rest:
        secs = f"{rest / _US:.6f}".rstrip("0").rstrip(".")
        parts.append(f"{secs}s")
    return "".join(parts) or "0s"


# --------------------------------------------------------------------------------------------
# Models


def _key(fields: dict[str, Any]) -> str:
    text = json.dumps(fields, sort_keys=True, separators=(",", ":"))
    return f"{fields['kind']}:{hashlib.sha256(text.encode()).hexdigest()[:16]}"


def _from_validation_error(exc: ValidationError, kind: str, fields: Iterable[str]) -> InvalidInput:
    problems = []
    for error in exc.errors(include_url=False):
        where = ".".join(str(part) for part in error["loc"]) or kind
        if error["type"] == "missing":
            problems.append(f"'{where}' is required")
        elif error["type"] == "extra_forbidden":
            problems.append(f"unknown field '{where}'")
        else:
            problems.append(f"'{where}': {error['msg']} (got {error.get('input')!r})")
    valid = ", ".join(fields)
    return InvalidInput(
        f"invalid {kind} schedule: {'; '.join(problems)}. Valid fields: {valid}; "
        f"e.g. {_EXAMPLES.get(kind, '')}",
        errors=problems,
    )


class _ScheduleBase(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: str
    timezone: str = "UTC"
    active: bool = True

    _MAIN: ClassVar[str]

    if not TYPE_CHECKING:
        # The main field may be given positionally; pydantic's structural errors (a missing or
        # unknown field, a wrong type) become InvalidInput like the validators' own errors.
        def __init__(self, *args: Any, **data: Any) -> None:
            if args:
                if len(args) > 1 or self._MAIN in data:
                    raise TypeError(
                        f"{type(self).__name__}() takes {self._MAIN!r} as its only positional "
                        "argument"
                    )
                data[self._MAIN] = args[0]
            try:
                super().__init__(**data)
            except ValidationError as exc:
                raise _from_validation_error(
                    exc, type(self).model_fields["kind"].default, type(self).model_fields
                ) from None

    @field_validator("timezone")
    @classmethod
    def _check_timezone(cls, value: str) -> str:
        _zone(value)
        return value

    def _tz(self) -> ZoneInfo | None:
        """None for UTC, which needs no DST arithmetic."""
        return None if _is_utc(self.timezone) else _zone(self.timezone)

    def next_times(self, after: datetime, until: datetime, limit: int = 100) -> list[datetime]:
        """The schedule's times strictly after `after` and at or before `until`, in order.

        At most `limit` of them, as aware UTC datetimes. `after` and `until` may be aware
        datetimes in any zone or naive ones, which are taken as UTC. `active` is not looked at:
        the scheduler decides whether an inactive schedule runs.
        """
        # Before 1900 or near year 9999 there is nothing to schedule, and offsets overflow.
        start, end = max(_utc_naive(after), _WALL_MIN), min(_utc_naive(until), _WALL_MAX)
        if limit <= 0 or end <= start:
            return []
        return self._times(start, end, limit)

    def _times(self, after: datetime, until: datetime, limit: int) -> list[datetime]:
        raise NotImplementedError

    def describe(self) -> str:
        """A short human text, e.g. "cron '0 6 * * *' (Europe/Paris)" or "every 1h30m"."""
        text = self._describe()
        return text if self.active else f"{text} [inactive]"

    def _describe(self) -> str:
        raise NotImplementedError

    def key(self) -> str:
        """A stable string for the schedule's timing (not its `active` flag).

        The same timing gives the same key in every process and version; any change to the
        timing (expression, interval, anchor, time zone) gives another. Used in the idempotency
        keys of scheduled runs.
        """
        return _key(self._timing())

    def _timing(self) -> dict[str, Any]:
        raise NotImplementedError


class CronSchedule(_ScheduleBase):
    """A cron expression (5 fields, or an alias like @daily) on the wall clock of `timezone`.

    `day_or` follows cron: when both day-of-month and day-of-week are restricted, a day matching
    either runs (set False to require both).
    """

    kind: Literal["cron"] = "cron"
    cron: str
    day_or: bool = True

    _MAIN: ClassVar[str] = "cron"

    if TYPE_CHECKING:

        def __init__(
            self,
            cron: str,
            *,
            day_or: bool = True,
            timezone: str = "UTC",
            active: bool = True,
            kind: Literal["cron"] = "cron",
        ) -> None: ...

    @field_validator("cron", mode="before")
    @classmethod
    def _check_cron(cls, value: Any) -> Any:
        if not isinstance(value, str):
            raise InvalidInput(
                f"cron must be a string like '0 6 * * *', got {value!r}", field="cron"
            )
        return " ".join(value.split())

    @model_validator(mode="after")
    def _compile(self) -> CronSchedule:
        _cron_plan(self.cron, self.day_or)
        return self

    def _times(self, after: datetime, until: datetime, limit: int) -> list[datetime]:
        plan = _cron_plan(self.cron, self.day_or)
        tz = self._tz()
        walls = plan.walls(_start_wall(after, tz), _last_wall_date(until, tz))
        return _collect(walls, tz, plan.every_hour, after, until, limit)

    def _describe(self) -> str:
        both = "" if self.day_or else ", day-of-month and day-of-week both required"
        return f"cron '{self.cron}' ({self.timezone}){both}"

    def _timing(self) -> dict[str, Any]:
        return {
            "kind": "cron",
            "cron": self.cron.lower(),
            "day_or": self.day_or,
            "timezone": self.timezone,
        }


class IntervalSchedule(_ScheduleBase):
    """Every `interval` seconds (a number or a timedelta), in phase with `anchor_date`.

    The anchor fixes the phase only: times before it exist too. A naive anchor is a wall time in
    `timezone`; without one the phase is midnight, 2020-01-01, in `timezone`. Intervals of whole
    days keep the anchor's wall-clock time across DST changes; others are exact elapsed time.
    """

    kind: Literal["interval"] = "interval"
    interval: float
    anchor_date: datetime | None = None

    _MAIN: ClassVar[str] = "interval"

    if TYPE_CHECKING:

        def __init__(
            self,
            interval: float | timedelta | str,
            *,
            anchor_date: datetime | None = None,
            timezone: str = "UTC",
            active: bool = True,
            kind: Literal["interval"] = "interval",
        ) -> None: ...

    @field_validator("interval", mode="before")
    @classmethod
    def _check_interval(cls, value: Any) -> float:
        return _interval_seconds(value)

    @field_validator("anchor_date")
    @classmethod
    def _localize_anchor(cls, value: datetime | None, info: ValidationInfo) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=_zone(info.data.get("timezone", "UTC")))
        return value

    @property
    def _interval_us(self) -> int:
        return round(self.interval * _US)

    def _anchor_wall(self) -> datetime:
        if self.anchor_date is None:
            return DEFAULT_ANCHOR
        return _to_wall(self.anchor_date, _zone(self.timezone))

    def _anchor_utc(self) -> datetime:
        if self.anchor_date is not None:
            return _utc_naive(self.anchor_date)
        tz = self._tz()
        if tz is None:
            return DEFAULT_ANCHOR
        return _utc_naive(DEFAULT_ANCHOR.replace(tzinfo=tz))

    def _times(self, after: datetime, until: datetime, limit: int) -> list[datetime]:
        step = self._interval_us
        tz = self._tz()
        if tz is not None and step % _DAY_US == 0:
            # Whole days: same wall-clock time every time, whatever the UTC offset.
            anchor = self._anchor_wall()
            days = step // _DAY_US
            wall_after = _start_wall(after, tz)
            k = (wall_after - anchor) // timedelta(days=days) - 1
            first = anchor + k * timedelta(days=days)
            walls = _fixed_time_walls(first, timedelta(days=days))
            return _collect(walls, tz, False, after, until, limit)
        anchor_us = (self._anchor_utc() - _EPOCH) // timedelta(microseconds=1)
        after_us = (after - _EPOCH) // timedelta(microseconds=1)
        until_us = (until - _EPOCH) // timedelta(microseconds=1)
        at = anchor_us + ((after_us - anchor_us) // step + 1) * step
        times: list[datetime] = []
        while at <= until_us and len(times) < limit:
            times.append((_EPOCH + timedelta(microseconds=at)).replace(tzinfo=UTC))
            at += step
        return times

    def _describe(self) -> str:
        text = f"every {_format_duration(self.interval)}"
        if self.anchor_date is not None:
            wall = self._anchor_wall()
            text += f" from {wall:%Y-%m-%d %H:%M}" + (f":{wall:%S}" if wall.second else "")
        if not _is_utc(self.timezone) and (self.anchor_date is not None or self._whole_days()):
            text += f" ({self.timezone})"
        return text

    def _whole_days(self) -> bool:
        return self._interval_us % _DAY_US == 0

    def _timing(self) -> dict[str, Any]:
        return {
            "kind": "interval",
            "interval_us": self._interval_us,
            "anchor": self._anchor_utc().isoformat(),
            "timezone": self.timezone,
        }


class RRuleSchedule(_ScheduleBase):
    """An RFC 5545 recurrence rule (dateutil's rrulestr) on the wall clock of `timezone`.

    Without a DTSTART line the rule starts at midnight, 2020-01-01, in `timezone`. A DTSTART with
    a TZID sets `timezone` when none is given; when both are given, the DTSTART instant is read
    on `timezone`'s clock. COUNT, UNTIL, RDATE and EXDATE work.
    """

    kind: Literal["rrule"] = "rrule"
    rrule: str

    _MAIN: ClassVar[str] = "rrule"

    if TYPE_CHECKING:

        def __init__(
            self,
            rrule: str,
            *,
            timezone: str = "UTC",
            active: bool = True,
            kind: Literal["rrule"] = "rrule",
        ) -> None: ...

    @model_validator(mode="before")
    @classmethod
    def _timezone_from_dtstart(cls, data: Any) -> Any:
        if isinstance(data, dict) and "timezone" not in data and isinstance(data.get("rrule"), str):
            match = _TZID_RE.search(data["rrule"])
            # An unknown TZID is left for compiling the rule, which says where it is wrong.
            if match:
                with contextlib.suppress(InvalidInput):
                    data = {**data, "timezone": _zone(match.group(1).strip()).key}
        return data

    @field_validator("rrule", mode="before")
    @classmethod
    def _check_rrule(cls, value: Any) -> Any:
        if not isinstance(value, str):
            raise InvalidInput(
                f"rrule must be a string like 'FREQ=DAILY;BYHOUR=6', got {value!r}", field="rrule"
            )
        return "\n".join(line.strip() for line in value.strip().splitlines() if line.strip())

    @model_validator(mode="after")
    def _compile(self) -> RRuleSchedule:
        _rrule_plan(self.rrule, self.timezone)
        return self

    def _times(self, after: datetime, until: datetime, limit: int) -> list[datetime]:
        plan = _rrule_plan(self.rrule, self.timezone)
        tz = self._tz()
        walls = plan.walls(_start_wall(after, tz), _last_wall_date(until, tz))
        return _collect(walls, tz, plan.every_hour, after, until, limit)

    def _describe(self) -> str:
        return f"rrule '{self.rrule.replace(chr(10), ' ')}' ({self.timezone})"

    def _timing(self) -> dict[str, Any]:
        return {"kind": "rrule", "rrule": self.rrule, "timezone": self.timezone}


Schedule = Annotated[CronSchedule | IntervalSchedule | RRuleSchedule, Field(discriminator="kind")]

_CLASSES: dict[str, type[CronSchedule] | type[IntervalSchedule] | type[RRuleSchedule]] = {
    "cron": CronSchedule,
    "interval": IntervalSchedule,
    "rrule": RRuleSchedule,
}


# --------------------------------------------------------------------------------------------
# Functions


def parse_schedule(data: Mapping[str, Any] | Schedule) -> Schedule:
    """A schedule from its dict (as stored, or sent by a client).

    `kind` may be left out when the dict has exactly one of `cron`, `interval`, `rrule`; an
    `id` (as in the API's deployment output) is ignored. Raises InvalidInput, never pydantic's
    ValidationError.
    """
    if isinstance(data, _ScheduleBase):
        return data
    if not isinstance(data, Mapping):
        raise InvalidInput(
            f"a schedule must be an object like {{'kind': 'cron', 'cron': '0 6 * * *'}}, "
            f"got {type(data).__name__}"
        )
    try:
        # Stored schedules are parsed again on every scheduler pass; equal dicts give one
        # (immutable) model, so the pass does not validate 10,000 schedules each time.
        # The type is part of the key: True == 1, but interval=True is an error.
        cache_key = tuple(sorted((k, type(v).__name__, v) for k, v in data.items()))
        hash(cache_key)
    except TypeError:
        return _parse(dict(data))
    return _parse_cached(cache_key)


@lru_cache(maxsize=65536)
def _parse_cached(items: tuple[tuple[str, str, Any], ...]) -> Schedule:
    return _parse({name: value for name, _, value in items})


def _parse(data: dict[str, Any]) -> Schedule:
    if any(not isinstance(name, str) for name in data):
        raise InvalidInput("a schedule's field names must be strings")
    # The API lists a deployment's schedules with their row id; sent back, it means nothing.
    data.pop("id", None)
    kind = data.get("kind")
    if kind is None:
        present = [name for name in KINDS if name in data]
        if len(present) > 1:
            raise InvalidInput(
                f"a schedule has one of 'cron', 'interval', 'rrule', not {' and '.join(present)}"
                "; give several schedules instead",
                field="kind",
            )
        if not present:
            raise InvalidInput(
                "a schedule needs a 'kind': one of 'cron', 'interval', 'rrule' "
                "(e.g. {'kind': 'cron', 'cron': '0 6 * * *'})",
                field="kind",
            )
        kind = present[0]
        data = {**data, "kind": kind}
    cls = _CLASSES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise InvalidInput(
            f"unknown schedule kind {kind!r}; valid kinds: {', '.join(map(repr, KINDS))}",
            field="kind",
            value=kind,
        )
    return cls(**data)


def schedule_to_dict(schedule: Schedule) -> dict[str, Any]:
    """The schedule as a JSON-safe dict that `parse_schedule` reads back to an equal schedule."""
    return schedule.model_dump(mode="json")


#: How many upcoming times `shortest_gap` compares, over at most a year.
_GAP_SAMPLE = 2000


def shortest_gap(schedule: Schedule, after: datetime | None = None) -> timedelta | None:
    """The shortest time between two consecutive runs of the schedule, None if it runs once.

    Measured over its next 2,000 times within a year of `after` (default: now), in elapsed
    time: a daily run in a zone with daylight saving is once 23 hours from the next.
    """
    start = after or datetime.now(UTC)
    times = schedule.next_times(start, start + timedelta(days=366), limit=_GAP_SAMPLE)
    return min((b - a for a, b in pairwise(times)), default=None)


def make_schedule(
    cron: str | None = None,
    interval: float | timedelta | str | None = None,
    rrule: str | None = None,
    timezone: str | None = None,
    *,
    anchor_date: datetime | None = None,
) -> Schedule:
    """Exactly one schedule from keyword options, e.g. `make_schedule(cron="0 6 * * *")`."""
    given = [
        name
        for name, value in (("cron", cron), ("interval", interval), ("rrule", rrule))
        if value is not None
    ]
    options = "cron='0 6 * * *', interval=3600 (seconds or a timedelta) or rrule='FREQ=DAILY'"
    if not given:
        raise InvalidInput(f"give a schedule: one of {options}")
    if len(given) > 1:
        raise InvalidInput(
            f"give only one of cron, interval or rrule, not {' and '.join(given)}; "
            "a deployment may have several schedules, each made separately"
        )
    if anchor_date is not None and interval is None:
        raise InvalidInput("anchor_date only applies to an interval schedule")
    data: dict[str, Any] = {}
    if timezone is not None:
        data["timezone"] = timezone
    if cron is not None:
        return CronSchedule(cron, **data)
    if interval is not None:
        return IntervalSchedule(interval, anchor_date=anchor_date, **data)
    assert rrule is not None
    return RRuleSchedule(rrule, **data)
