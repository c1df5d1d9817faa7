"""Schedules: times across DST changes, validation messages, keys, dict round trips."""

from __future__ import annotations

import itertools
import json
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter
from dateutil.rrule import rrulestr
from pydantic import TypeAdapter

from nbflows.errors import InvalidInput
from nbflows.scheduling.schedules import (
    CronSchedule,
    IntervalSchedule,
    RRuleSchedule,
    Schedule,
    make_schedule,
    parse_schedule,
    schedule_to_dict,
    shortest_gap,
)

UTC = timezone.utc
PARIS = ZoneInfo("Europe/Paris")
# Europe/Paris in 2024: 02:00 CET -> 03:00 CEST on March 31st (01:00 UTC),
# 03:00 CEST -> 02:00 CET on October 27th (01:00 UTC).


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def local(times: list[datetime], tz: ZoneInfo = PARIS) -> list[str]:
    return [t.astimezone(tz).strftime("%m-%d %H:%M %Z") for t in times]


# --- cron -------------------------------------------------------------------------------------


def test_daily_cron_stays_at_six_local_across_both_dst_changes() -> None:
    s = CronSchedule(cron="0 6 * * *", timezone="Europe/Paris")

    spring = s.next_times(utc(2024, 3, 29, 12), utc(2024, 4, 2, 12))
    assert spring == [
        utc(2024, 3, 30, 5),
        utc(2024, 3, 31, 4),
        utc(2024, 4, 1, 4),
        utc(2024, 4, 2, 4),
    ]
    autumn = s.next_times(utc(2024, 10, 25, 12), utc(2024, 10, 28, 12))
    assert autumn == [utc(2024, 10, 26, 4), utc(2024, 10, 27, 5), utc(2024, 10, 28, 5)]
    assert {t.astimezone(PARIS).strftime("%H:%M") for t in spring + autumn} == {"06:00"}
    assert all(t.tzinfo is UTC for t in spring + autumn)


def test_daily_cron_in_new_york_keeps_local_time() -> None:
    s = CronSchedule("30 9 * * *", timezone="America/New_York")
    times = s.next_times(utc(2024, 3, 8), utc(2024, 3, 12))
    assert [t.hour for t in times] == [14, 14, 13, 13]  # EST, then EDT from March 10th
    assert local(times, ZoneInfo("America/New_York"))[0] == "03-08 09:30 EST"


def test_fixed_time_in_skipped_hour_runs_once_shifted_and_repeated_hour_runs_once() -> None:
    s = CronSchedule("30 2 * * *", timezone="Europe/Paris")

    spring = s.next_times(utc(2024, 3, 30, 12), utc(2024, 4, 1, 12))
    # 02:30 does not exist on March 31st: it runs at 03:30 CEST (the gap's length later).
    assert local(spring) == ["03-31 03:30 CEST", "04-01 02:30 CEST"]

    autumn = s.next_times(utc(2024, 10, 26, 12), utc(2024, 10, 28, 12))
    # 02:30 happens twice on October 27th: a daily job runs once, at the first.
    assert autumn == [utc(2024, 10, 27, 0, 30), utc(2024, 10, 28, 1, 30)]

    # Asked during the repeated hour, after the first 02:30: the next run is the next day.
    assert s.next_times(utc(2024, 10, 27, 0, 40), utc(2024, 10, 28, 12)) == [
        utc(2024, 10, 28, 1, 30)
    ]


def test_hourly_cron_runs_every_real_hour_across_dst_changes() -> None:
    s = CronSchedule("0 * * * *", timezone="Europe/Paris")

    autumn = s.next_times(utc(2024, 10, 26, 22, 30), utc(2024, 10, 27, 3, 30))
    assert autumn == [utc(2024, 10, 26, 23), *(utc(2024, 10, 27, h) for h in range(4))]
    assert local(autumn)[1:3] == ["10-27 02:00 CEST", "10-27 02:00 CET"]

    spring = s.next_times(utc(2024, 3, 30, 23, 30), utc(2024, 3, 31, 2, 30))
    assert spring == [utc(2024, 3, 31, 0), utc(2024, 3, 31, 1), utc(2024, 3, 31, 2)]
    assert local(spring) == ["03-31 01:00 CET", "03-31 03:00 CEST", "03-31 04:00 CEST"]


def test_every_30_minutes_stays_evenly_spaced_through_the_repeated_hour() -> None:
    s = CronSchedule("*/30 * * * *", timezone="Europe/Paris")
    times = s.next_times(utc(2024, 10, 26, 23, 10), utc(2024, 10, 27, 2, 10))
    assert times == [utc(2024, 10, 26, 23, 30)] + [
        utc(2024, 10, 27, 0) + timedelta(minutes=30 * i) for i in range(5)
    ]
    # Asked from inside the first pass of the repeated hour, the second pass is still ahead.
    assert s.next_times(utc(2024, 10, 27, 0, 40), utc(2024, 10, 28), limit=3) == [
        utc(2024, 10, 27, 1),
        utc(2024, 10, 27, 1, 30),
        utc(2024, 10, 27, 2),
    ]


@pytest.mark.parametrize(
    "zone", ["Europe/Paris", "America/New_York", "Australia/Sydney", "Australia/Lord_Howe"]
)
def test_quarter_hourly_cron_is_evenly_spaced_and_daily_cron_fixed_all_year(zone: str) -> None:
    # Lord Howe moves its clocks by 30 minutes, the others by an hour.
    quarter = CronSchedule("*/15 * * * *", timezone=zone)
    times = quarter.next_times(utc(2024, 1, 1), utc(2025, 1, 1), limit=40_000)
    assert len(times) == 35_136  # 366 days x 96: the clock changes add and drop nothing
    assert {b - a for a, b in itertools.pairwise(times)} == {timedelta(minutes=15)}

    daily = CronSchedule("0 6 * * *", timezone=zone)
    times = daily.next_times(utc(2023, 12, 31, 21), utc(2024, 12, 31, 21), limit=400)
    assert len(times) == 366
    assert {t.astimezone(ZoneInfo(zone)).strftime("%H:%M") for t in times} == {"06:00"}


def test_next_times_window_bounds_limit_and_naive_datetimes() -> None:
    s = CronSchedule("0 * * * *")
    # Strictly after `after`, up to and including `until`.
    assert s.next_times(utc(2024, 1, 1, 1), utc(2024, 1, 1, 3)) == [
        utc(2024, 1, 1, 2),
        utc(2024, 1, 1, 3),
    ]
    # Naive datetimes are UTC; aware ones may be in any zone.
    assert s.next_times(datetime(2024, 1, 1, 1), datetime(2024, 1, 1, 3)) == [
        utc(2024, 1, 1, 2),
        utc(2024, 1, 1, 3),
    ]
    assert s.next_times(datetime(2024, 1, 1, 2, tzinfo=PARIS), utc(2024, 1, 1, 2)) == [
        utc(2024, 1, 1, 2)
    ]
    assert len(s.next_times(utc(2024, 1, 1), utc(2024, 2, 1))) == 100
    assert s.next_times(utc(2024, 1, 1), utc(2024, 2, 1), limit=2) == [
        utc(2024, 1, 1, 1),
        utc(2024, 1, 1, 2),
    ]
    assert s.next_times(utc(2024, 1, 2), utc(2024, 1, 1)) == []
    assert s.next_times(utc(2024, 1, 1), utc(2024, 1, 2), limit=0) == []


@pytest.mark.parametrize(
    ("expression", "day_or"),
    [
        ("*/7 3-5 * * *", True),
        ("0 0 1,15 * MON", True),
        ("0 6 13 * 5", True),
        ("0 6 13 * 5", False),
        ("15 6 * JAN,JUL *", True),
        ("0 12 * * 7", True),
        ("59 23 31 * *", True),
        ("0 0 29 2 *", True),
        ("0 22 * * 1-5", True),
        ("5/20 */6 * * *", True),
        ("@weekly", True),
        ("0 6 L * *", True),
        ("0 6 * * fri#2", True),
        ("0 9 15W * *", True),
    ],
)
def test_cron_times_match_croniter_in_utc(expression: str, day_or: bool) -> None:
    s = CronSchedule(expression, day_or=day_or)
    after, until = datetime(2023, 12, 20, 7, 13), datetime(2028, 3, 10)
    it = croniter(expression, after, day_or=day_or, ret_type=datetime)
    expected: list[datetime] = []
    while len(expected) < 300 and (when := it.get_next()) <= until:
        expected.append(when.replace(tzinfo=UTC))
    assert s.next_times(after, until, limit=300) == expected
    # The same again from a later point (sparse crons remember their next match).
    half = len(expected) // 2
    later = s.next_times(expected[half] - timedelta(minutes=1), until, limit=len(expected) - half)
    assert later == expected[half:]


def test_day_or_decides_between_either_and_both_day_fields() -> None:
    either = CronSchedule("0 6 13 * 5").next_times(utc(2024, 1, 1), utc(2024, 1, 31))
    both = CronSchedule("0 6 13 * 5", day_or=False).next_times(utc(2024, 1, 1), utc(2025, 12, 31))
    assert [t.day for t in either] == [5, 12, 13, 19, 26]  # Fridays, and the 13th
    assert [t.date().isoformat() for t in both] == ["2024-09-13", "2024-12-13", "2025-06-13"]


# --- interval ---------------------------------------------------------------------------------


def test_interval_with_anchor_gives_times_in_phase_before_and_after_it() -> None:
    s = IntervalSchedule(interval=5400, anchor_date=datetime(2024, 1, 1, 0, 20, tzinfo=UTC))
    assert s.next_times(utc(2024, 1, 1, 1), utc(2024, 1, 1, 6)) == [
        utc(2024, 1, 1, 1, 50),
        utc(2024, 1, 1, 3, 20),
        utc(2024, 1, 1, 4, 50),
    ]
    # The anchor fixes the phase, not a start: earlier times exist too.
    assert s.next_times(utc(2023, 12, 31, 22), utc(2024, 1, 1, 0, 20)) == [
        utc(2023, 12, 31, 22, 50),
        utc(2024, 1, 1, 0, 20),
    ]


def test_interval_accepts_timedelta_and_duration_strings() -> None:
    assert IntervalSchedule(timedelta(minutes=90)).interval == 5400.0
    assert IntervalSchedule("PT1H30M").interval == 5400.0
    assert IntervalSchedule("5400").interval == 5400.0
    assert parse_schedule({"interval": 0.25}).interval == 0.25  # type: ignore[union-attr]


def test_interval_without_anchor_is_in_phase_with_local_midnight() -> None:
    s = IntervalSchedule(3600, timezone="Asia/Kolkata")  # UTC+05:30
    times = s.next_times(utc(2024, 5, 1), utc(2024, 5, 1, 2))
    assert times == [utc(2024, 5, 1, 0, 30), utc(2024, 5, 1, 1, 30)]


def test_whole_day_interval_keeps_wall_time_and_shorter_ones_keep_elapsed_time() -> None:
    anchor = datetime(2024, 1, 1, 6)  # naive: 06:00 on the schedule's clock
    daily = IntervalSchedule(timedelta(days=1), anchor_date=anchor, timezone="Europe/Paris")
    times = daily.next_times(utc(2024, 3, 29), utc(2024, 4, 1, 12))
    assert local(times) == [
        "03-29 06:00 CET",
        "03-30 06:00 CET",
        "03-31 06:00 CEST",
        "04-01 06:00 CEST",
    ]
    half_day = IntervalSchedule(12 * 3600, anchor_date=anchor, timezone="Europe/Paris")
    times = half_day.next_times(utc(2024, 3, 30, 12), utc(2024, 3, 31, 18))
    assert [b - a for a, b in itertools.pairwise(times)] == [timedelta(hours=12)] * 2
    assert local(times) == ["03-30 18:00 CET", "03-31 07:00 CEST", "03-31 19:00 CEST"]


# --- rrule ------------------------------------------------------------------------------------


def test_rrule_in_a_timezone_follows_local_time() -> None:
    s = RRuleSchedule("FREQ=DAILY;BYHOUR=6;BYMINUTE=0", timezone="Europe/Paris")
    times = s.next_times(utc(2024, 3, 29, 12), utc(2024, 4, 1, 12))
    assert times == [utc(2024, 3, 30, 5), utc(2024, 3, 31, 4), utc(2024, 4, 1, 4)]


def test_rrule_dtstart_tzid_sets_the_timezone() -> None:
    s = RRuleSchedule(
        "DTSTART;TZID=America/New_York:20240101T090000\nRRULE:FREQ=WEEKLY;BYDAY=MO,FR"
    )
    assert s.timezone == "America/New_York"
    times = s.next_times(utc(2024, 3, 6), utc(2024, 3, 12))
    assert times == [utc(2024, 3, 8, 14), utc(2024, 3, 11, 13)]  # 09:00 EST, then 09:00 EDT


def test_hourly_rrule_runs_every_real_hour_across_dst_changes() -> None:
    s = RRuleSchedule("FREQ=HOURLY;BYMINUTE=0", timezone="Europe/Paris")
    autumn = s.next_times(utc(2024, 10, 26, 22, 30), utc(2024, 10, 27, 3, 30))
    assert autumn == [utc(2024, 10, 26, 23), *(utc(2024, 10, 27, h) for h in range(4))]
    spring = s.next_times(utc(2024, 3, 30, 23, 30), utc(2024, 3, 31, 2, 30))
    assert spring == [utc(2024, 3, 31, 0), utc(2024, 3, 31, 1), utc(2024, 3, 31, 2)]


def test_time_shifted_out_of_the_skipped_hour_sorts_among_the_others() -> None:
    s = RRuleSchedule(
        "DTSTART:20240331T031000\nRRULE:FREQ=DAILY;COUNT=2\nRDATE:20240331T024000,20240331T032000",
        timezone="Europe/Paris",
    )
    # 02:40 does not exist on March 31st and becomes 03:40 CEST, after the 03:10 and 03:20 runs.
    assert local(s.next_times(utc(2024, 3, 30), utc(2024, 4, 2))) == [
        "03-31 03:10 CEST",
        "03-31 03:20 CEST",
        "03-31 03:40 CEST",
        "04-01 03:10 CEST",
    ]
    assert s.next_times(utc(2024, 3, 30), utc(2024, 4, 2), limit=2) == [
        utc(2024, 3, 31, 1, 10),
        utc(2024, 3, 31, 1, 20),
    ]


def test_rrule_count_until_rdate_exdate() -> None:
    count = RRuleSchedule("DTSTART:20240101T060000\nRRULE:FREQ=DAILY;COUNT=3")
    assert count.next_times(utc(2023, 1, 1), utc(2025, 1, 1)) == [
        utc(2024, 1, 1, 6),
        utc(2024, 1, 2, 6),
        utc(2024, 1, 3, 6),
    ]
    until = RRuleSchedule("FREQ=DAILY;BYHOUR=6;UNTIL=20240103T120000Z")
    assert until.next_times(utc(2024, 1, 1), utc(2024, 2, 1)) == [
        utc(2024, 1, 1, 6),
        utc(2024, 1, 2, 6),
        utc(2024, 1, 3, 6),
    ]
    naive_until = RRuleSchedule("FREQ=DAILY;BYHOUR=6;UNTIL=20240102T120000")
    assert naive_until.next_times(utc(2024, 1, 1), utc(2024, 2, 1)) == [
        utc(2024, 1, 1, 6),
        utc(2024, 1, 2, 6),
    ]
    dates = RRuleSchedule(
        "DTSTART:20240101T060000\nRRULE:FREQ=DAILY\nEXDATE:20240102T060000\nRDATE:20240102T120000"
    )
    assert dates.next_times(utc(2024, 1, 1), utc(2024, 1, 3, 12)) == [
        utc(2024, 1, 1, 6),
        utc(2024, 1, 2, 12),
        utc(2024, 1, 3, 6),
    ]


@pytest.mark.parametrize(
    "text",
    [
        "FREQ=HOURLY;INTERVAL=5;BYMINUTE=10,40",
        "FREQ=WEEKLY;INTERVAL=3;BYDAY=TU,SA;BYHOUR=8",
        "DTSTART:20200131T100000\nRRULE:FREQ=MONTHLY;INTERVAL=5",
        "DTSTART:20200229T100000\nRRULE:FREQ=YEARLY",
        "FREQ=DAILY;INTERVAL=3;BYHOUR=6,18;BYSETPOS=-1",
    ],
)
def test_rrule_far_from_its_start_gives_dateutils_times(text: str) -> None:
    # Queries years after DTSTART use a rule moved forward; the times must not change.
    s = RRuleSchedule(text)
    rule = rrulestr(text, dtstart=datetime(2020, 1, 1))
    for after in (datetime(2026, 5, 17, 3, 21), datetime(2026, 5, 20), datetime(2031, 2, 3)):
        until = after + timedelta(days=1500)
        expected = [t.replace(tzinfo=UTC) for t in rule.between(after, until)][:40]
        assert expected
        assert s.next_times(after, until, limit=40) == expected


def test_minutely_rrule_years_after_its_start_keeps_its_phase() -> None:
    s = RRuleSchedule("FREQ=MINUTELY;INTERVAL=7")  # from 2020-01-01 00:00
    for after in (datetime(2026, 5, 17, 3, 21, 30), datetime(2026, 5, 17, 9), datetime(2031, 2, 3)):
        times = s.next_times(after, after + timedelta(days=1), limit=40)
        step = timedelta(minutes=7)
        first = datetime(2020, 1, 1) + ((after - datetime(2020, 1, 1)) // step + 1) * step
        assert times == [(first + i * step).replace(tzinfo=UTC) for i in range(40)]


# --- validation -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (
            {"kind": "cron", "cron": "0 25 * * *"},
            ["'0 25 * * *'", "hour field '25'", "0-23", "'0 6 * * *'"],
        ),
        ({"kind": "cron", "cron": "61 6 * * *"}, ["minute field '61'", "0-59"]),
        ({"kind": "cron", "cron": "0 6 * * mon-xyz"}, ["day-of-week field 'mon-xyz'", "SUN-SAT"]),
        ({"kind": "cron", "cron": "0 6 * *"}, ["4 fields, not 5", "'0 6 * * *'"]),
        (
            {"kind": "cron", "cron": "0 6 * * * *"},
            ["6 fields", "seconds and years are not supported"],
        ),
        ({"kind": "cron", "cron": "0 6 31 2 *"}, ["can never occur"]),
        ({"kind": "cron", "cron": "@sometimes"}, ["unknown alias", "@daily"]),
        ({"kind": "cron", "cron": ""}, ["empty", "'0 6 * * *'"]),
        ({"kind": "cron", "cron": 6}, ["cron must be a string"]),
        ({"kind": "rrule", "rrule": "FREQ=SOMETIMES"}, ["invalid rrule", "FREQ", "FREQ=DAILY"]),
        ({"kind": "rrule", "rrule": "hello"}, ["invalid rrule 'hello'", "NAME=VALUE"]),
        ({"kind": "rrule", "rrule": "FREQ=DAILY;BYHOUR=25"}, ["hour must be in 0..23"]),
        (
            {"kind": "rrule", "rrule": "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=30"},
            ["never produces a time"],
        ),
        ({"kind": "rrule", "rrule": "FREQ=DAILY;FOO=1"}, ["unknown parameter 'FOO'"]),
        (
            {"kind": "rrule", "rrule": "DTSTART;TZID=Mars/Base:20240101T060000\nRRULE:FREQ=DAILY"},
            ["TZID", "unknown timezone 'Mars/Base'"],
        ),
        (
            {"kind": "cron", "cron": "0 6 * * *", "timezone": "Europe/Pariss"},
            ["unknown timezone 'Europe/Pariss'", "did you mean 'Europe/Paris'", "'UTC'"],
        ),
        (
            {"kind": "cron", "cron": "0 6 * * *", "timezone": "europe/paris"},
            ["did you mean 'Europe/Paris'"],
        ),
        ({"kind": "rrule", "rrule": "FREQ=DAILY", "timezone": "Mars/Base"}, ["'Europe/Paris'"]),
        ({"kind": "interval", "interval": 0}, ["positive number of seconds", "got 0"]),
        ({"kind": "interval", "interval": -60}, ["positive number of seconds", "got -60"]),
        ({"kind": "interval", "interval": float("nan")}, ["positive number of seconds"]),
        ({"kind": "interval", "interval": True}, ["number of seconds or a timedelta"]),
        ({"kind": "interval", "interval": "soon"}, ["'soon'", "PT1H30M"]),
        ({"kind": "interval"}, ["'interval' is required", "Valid fields"]),
        (
            {"kind": "weekly", "cron": "0 6 * * *"},
            ["unknown schedule kind 'weekly'", "'cron', 'interval', 'rrule'"],
        ),
        ({}, ["needs a 'kind'", "'cron', 'interval', 'rrule'"]),
        ({"cron": "0 6 * * *", "interval": 60}, ["not cron and interval"]),
        ({"kind": "cron", "cron": "0 6 * * *", "crn": 1}, ["unknown field 'crn'", "cron, day_or"]),
        ({"kind": "cron", "cron": "0 6 * * *", "active": "maybe"}, ["'active'", "boolean"]),
    ],
)
def test_invalid_schedules_raise_invalid_input_saying_what_is_valid(
    data: dict[str, object], words: list[str]
) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_schedule(data)
    for word in words:
        assert word in caught.value.message
    assert caught.value.status == 422


def test_parse_schedule_rejects_a_non_object() -> None:
    with pytest.raises(InvalidInput, match="must be an object"):
        parse_schedule(["0 6 * * *"])  # type: ignore[arg-type]


def test_direct_construction_raises_invalid_input_too() -> None:
    with pytest.raises(InvalidInput, match="hour field"):
        CronSchedule("0 24 * * *")
    with pytest.raises(InvalidInput, match="positive number of seconds"):
        IntervalSchedule(interval=timedelta(0))
    with pytest.raises(InvalidInput, match="unknown timezone"):
        RRuleSchedule("FREQ=DAILY", timezone="Nowhere")
    with pytest.raises(InvalidInput, match="'day_or'"):
        CronSchedule.model_validate({"cron": "0 6 * * *", "day_or": "sometimes"})
    # Inside other pydantic types too (a deployment's list of schedules).
    with pytest.raises(InvalidInput, match="minute field"):
        TypeAdapter(list[Schedule]).validate_python([{"kind": "cron", "cron": "99 * * * *"}])


def test_make_schedule_builds_exactly_one() -> None:
    assert make_schedule(cron="0 6 * * *", timezone="Europe/Paris") == CronSchedule(
        "0 6 * * *", timezone="Europe/Paris"
    )
    assert make_schedule(interval=timedelta(hours=1)) == IntervalSchedule(3600)
    assert make_schedule(rrule="FREQ=DAILY") == RRuleSchedule("FREQ=DAILY")
    with pytest.raises(InvalidInput) as none:
        make_schedule(timezone="UTC")
    assert all(word in none.value.message for word in ("cron=", "interval=", "rrule="))
    with pytest.raises(
        InvalidInput, match="only one of cron, interval or rrule, not cron and rrule"
    ):
        make_schedule(cron="0 6 * * *", rrule="FREQ=DAILY")
    with pytest.raises(InvalidInput, match="unknown timezone 'Paris'"):
        make_schedule(cron="0 6 * * *", timezone="Paris")
    with pytest.raises(InvalidInput, match="interval"):
        make_schedule(interval=-1)


# --- describe, key, dicts ---------------------------------------------------------------------


def test_describe() -> None:
    assert CronSchedule("0 6 * * *", timezone="Europe/Paris").describe() == (
        "cron '0 6 * * *' (Europe/Paris)"
    )
    assert IntervalSchedule(5400).describe() == "every 1h30m"
    assert IntervalSchedule(0.5).describe() == "every 0.5s"
    assert IntervalSchedule(timedelta(days=1), timezone="Europe/Paris").describe() == (
        "every 1d (Europe/Paris)"
    )
    assert (
        IntervalSchedule(86400, anchor_date=datetime(2024, 1, 1, 6), timezone="Europe/Paris")
    ).describe() == "every 1d from 2024-01-01 06:00 (Europe/Paris)"
    assert RRuleSchedule("FREQ=DAILY;BYHOUR=6", active=False).describe() == (
        "rrule 'FREQ=DAILY;BYHOUR=6' (UTC) [inactive]"
    )


def test_key_is_stable_and_changes_with_the_timing() -> None:
    s = CronSchedule("0 6 * * *", timezone="Europe/Paris")
    assert s.key() == CronSchedule("0 6 * * *", timezone="Europe/Paris").key()
    assert s.key().startswith("cron:")
    assert s.key() == CronSchedule("0  6 * *  *", timezone="Europe/Paris", active=False).key()
    assert s.key() == parse_schedule(json.loads(json.dumps(schedule_to_dict(s)))).key()
    others = [
        CronSchedule("0 7 * * *", timezone="Europe/Paris"),
        CronSchedule("0 6 * * *"),
        CronSchedule("0 6 * * *", timezone="Europe/Paris", day_or=False),
        IntervalSchedule(3600),
        IntervalSchedule(3601),
        IntervalSchedule(3600, anchor_date=datetime(2024, 1, 1, 0, 5)),
        RRuleSchedule("FREQ=DAILY;BYHOUR=6", timezone="Europe/Paris"),
        RRuleSchedule("FREQ=DAILY;BYHOUR=7", timezone="Europe/Paris"),
    ]
    keys = [s.key(), *(o.key() for o in others)]
    assert len(set(keys)) == len(keys)
    assert IntervalSchedule(3600).key() == IntervalSchedule(timedelta(hours=1)).key()


def test_key_values_are_pinned() -> None:
    # Keys end up in scheduled runs' idempotency keys: if they changed between versions, an
    # upgraded server could schedule the same time twice.
    assert CronSchedule("0 6 * * *", timezone="Europe/Paris").key() == "cron:7e64009be0ab363b"
    assert IntervalSchedule(3600).key() == "interval:12304ae1a2d8a071"
    assert RRuleSchedule("FREQ=DAILY;BYHOUR=6").key() == "rrule:64511a610304073e"


@pytest.mark.parametrize(
    "schedule",
    [
        CronSchedule("0 6 * * MON-FRI", timezone="Europe/Paris", day_or=False),
        IntervalSchedule(5400),
        IntervalSchedule(86400, anchor_date=datetime(2024, 1, 1, 6), timezone="Europe/Paris"),
        IntervalSchedule(60, anchor_date=datetime(2024, 6, 1, 12, tzinfo=UTC), active=False),
        RRuleSchedule("DTSTART;TZID=Europe/Paris:20240101T060000\nRRULE:FREQ=DAILY;COUNT=5"),
        RRuleSchedule("FREQ=HOURLY;BYMINUTE=5", timezone="Asia/Tokyo"),
    ],
)
def test_dict_round_trip(schedule: Schedule) -> None:
    data = schedule_to_dict(schedule)
    again = parse_schedule(json.loads(json.dumps(data)))
    assert again == schedule
    assert type(again) is type(schedule)
    assert again.key() == schedule.key()
    assert data["kind"] == schedule.kind and data["timezone"] == schedule.timezone
    after, until = utc(2024, 1, 1), utc(2024, 1, 10)
    assert again.next_times(after, until) == schedule.next_times(after, until)


def test_parse_schedule_infers_kind_and_accepts_a_schedule() -> None:
    s = parse_schedule({"cron": "0 6 * * *", "timezone": "Europe/Paris"})
    assert isinstance(s, CronSchedule) and s.timezone == "Europe/Paris"
    assert parse_schedule(s) is s
    # Schedules as the API lists them (with their row id) can be sent back as they are.
    assert parse_schedule({"id": "7f3a", **schedule_to_dict(s)}) == s
    assert isinstance(parse_schedule({"rrule": "FREQ=DAILY"}), RRuleSchedule)
    assert TypeAdapter(list[Schedule]).validate_python(
        [{"kind": "interval", "interval": 60}, {"kind": "cron", "cron": "@daily"}]
    ) == [IntervalSchedule(60), CronSchedule("@daily")]


def test_shortest_gap_between_two_runs_of_each_kind() -> None:
    after = datetime(2026, 1, 1, tzinfo=UTC)
    assert shortest_gap(IntervalSchedule(0.001), after) == timedelta(milliseconds=1)
    assert shortest_gap(IntervalSchedule("P1D", timezone="Europe/Paris"), after) == timedelta(
        hours=23
    )
    assert shortest_gap(CronSchedule("* * * * *"), after) == timedelta(minutes=1)
    assert shortest_gap(CronSchedule("0,1 6 * * MON"), after) == timedelta(minutes=1)
    # The day clocks go forward is 23 hours long.
    assert shortest_gap(CronSchedule("0 6 * * *", timezone="Europe/Paris"), after) == timedelta(
        hours=23
    )
    assert shortest_gap(RRuleSchedule("FREQ=SECONDLY"), after) == timedelta(seconds=1)
    assert shortest_gap(RRuleSchedule("FREQ=MINUTELY;BYSECOND=0,30"), after) == timedelta(
        seconds=30
    )
    once = RRuleSchedule("DTSTART:20300101T000000\nRRULE:FREQ=DAILY;COUNT=1")
    assert shortest_gap(once, after) is None
