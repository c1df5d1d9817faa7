"""Schedules of deployments: cron, interval and RFC 5545 rrule, each in an IANA time zone.

The models, parsing and construction live here; the occurrence math of each kind in `cron.py`
and `rrule.py` (interval math is short enough to stay in `IntervalSchedule`), the wall-time and
DST rules they share in `walltime.py`.

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
import hashlib
import json
import math
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from functools import lru_cache
from itertools import pairwise
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal
from zoneinfo import ZoneInfo

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
from nbflows.scheduling.cron import (
    _cron_plan,
)
from nbflows.scheduling.rrule import (
    _TZID_RE,
    _rrule_plan,
    _to_wall,
)
from nbflows.scheduling.walltime import (
    _DAY_US,
    _EPOCH,
    _MAX_INTERVAL,
    _US,
    _WALL_MAX,
    _WALL_MIN,
    DEFAULT_ANCHOR,
    UTC,
    _collect,
    _fixed_time_walls,
    _is_utc,
    _last_wall_date,
    _start_wall,
    _utc_naive,
    _zone,
)

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

KINDS = ("cron", "interval", "rrule")
_EXAMPLES = {
    "cron": "cron='0 6 * * *' (every day at 06:00)",
    "interval": "interval=3600 (seconds, or a timedelta)",
    "rrule": "rrule='FREQ=WEEKLY;BYDAY=MO;BYHOUR=6;BYMINUTE=0'",
}


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
