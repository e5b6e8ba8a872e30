"""The daemon's schedules: cron weekdays as cron means them, seconds for compressed schedules."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rules.schedule import cron_trigger, scheduled_time

MONDAY = datetime(2026, 11, 30, tzinfo=UTC)  # a Monday


def fire_days(expression: str, tz: str = "UTC") -> set[int]:
    """Cron weekday numbers (0 = Sunday) on which the trigger fires during two weeks."""
    trigger = cron_trigger(expression, tz)
    days, previous, moment = set(), None, MONDAY
    while moment < MONDAY + timedelta(days=14):
        moment = trigger.get_next_fire_time(previous, moment)
        if moment is None or moment >= MONDAY + timedelta(days=14):
            break
        days.add(moment.isoweekday() % 7)
        previous, moment = moment, moment + timedelta(seconds=1)
    return days


@pytest.mark.parametrize(
    ("expression", "days"),
    [
        ("0 9 * * 1-5", {1, 2, 3, 4, 5}),
        ("0 9 * * 0", {0}),
        ("0 9 * * 7", {0}),
        ("0 9 * * sun,sat", {0, 6}),
        ("0 9 * * mon-fri", {1, 2, 3, 4, 5}),
        ("0 9 * * 5-7", {5, 6, 0}),
        ("0 9 * * */2", {0, 2, 4, 6}),
        ("0 9 * * *", {0, 1, 2, 3, 4, 5, 6}),
    ],
)
def test_weekdays_follow_cron_numbering(expression: str, days: set[int]) -> None:
    assert fire_days(expression) == days


@given(st.sets(st.integers(0, 6), min_size=1))
def test_any_list_of_weekdays_fires_on_exactly_those_days(days: set[int]) -> None:
    assert fire_days(f"30 8 * * {','.join(map(str, sorted(days)))}") == days


def test_the_company_time_zone_and_a_seconds_field() -> None:
    berlin = cron_trigger("0 9 * * 1-5", "Europe/Berlin").get_next_fire_time(None, MONDAY)
    assert berlin == datetime(2026, 11, 30, 8, 0, tzinfo=UTC)  # 09:00 CET
    every5 = cron_trigger("*/5 * * * * *", "UTC")
    first = every5.get_next_fire_time(None, MONDAY + timedelta(seconds=1))
    assert first == MONDAY + timedelta(seconds=5)


@pytest.mark.parametrize(
    ("expression", "says"),
    [
        ("0 9 * *", "has 4 fields, a cron line has 5"),
        ("0 0 9 * * * *", "has 7 fields"),
        ("0 25 * * *", "higher than the maximum value"),
        ("61 0 9 * * *", "higher than the maximum value"),
    ],
)
def test_a_bad_expression_says_what_is_wrong(expression: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        cron_trigger(expression, "UTC")


@pytest.mark.parametrize(
    ("expression", "tz", "now", "grace_s", "expected"),
    [
        ("0 8 * * 1", "UTC", MONDAY + timedelta(hours=8, seconds=3), 300, MONDAY + timedelta(hours=8)),
        ("0 8 * * 1", "UTC", MONDAY + timedelta(hours=8, minutes=6), 300, None),  # ran outside the grace
        ("0 8 * * 1", "UTC", MONDAY + timedelta(hours=7, minutes=59), 300, None),  # before its time
        ("0 8 * * 1", "Europe/Berlin", MONDAY + timedelta(hours=7, seconds=1), 60, MONDAY + timedelta(hours=7)),
        ("*/30 * * * * *", "UTC", MONDAY + timedelta(seconds=95), 300, MONDAY + timedelta(seconds=90)),  # coalesced
        ("*/30 * * * * *", "UTC", MONDAY + timedelta(seconds=90), 300, MONDAY + timedelta(seconds=90)),
    ],
)
def test_the_scheduled_time_a_run_is_for(
    expression: str, tz: str, now: datetime, grace_s: int, expected: datetime | None
) -> None:
    assert scheduled_time(cron_trigger(expression, tz), now, timedelta(seconds=grace_s)) == expected
