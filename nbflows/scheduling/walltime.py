"""Wall-clock time of schedules: time zones, UTC conversion, and the DST rules every kind shares
(a gap moves a time forward, an overlap fires once, except schedules that fire every hour)."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Iterator
from datetime import date, datetime, timedelta, timezone
from functools import cache, lru_cache
from zoneinfo import ZoneInfo, available_timezones

from nbflows.errors import InvalidInput

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
