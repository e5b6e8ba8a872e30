"""Fiscal periods in the company's time zone: boundaries, fiscal years, elapsed share."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from models.settings import CompanySettings
from rules.periods import PERIOD_KINDS, period_of


@pytest.mark.parametrize(
    ("kind", "local", "fiscal_start", "start", "end", "label"),
    [
        ("quarter", (2026, 11, 20, 12), 1, date(2026, 10, 1), date(2026, 12, 31), "FY2026 Q4"),
        ("quarter", (2026, 1, 31, 23, 30), 2, date(2025, 11, 1), date(2026, 1, 31), "FY2026 Q4"),
        ("quarter", (2026, 2, 1, 0, 0), 2, date(2026, 2, 1), date(2026, 4, 30), "FY2027 Q1"),
        ("month", (2024, 2, 29, 23, 59), 1, date(2024, 2, 1), date(2024, 2, 29), "FY2024 M02"),
        ("month", (2026, 7, 1, 0, 0), 7, date(2026, 7, 1), date(2026, 7, 31), "FY2027 M01"),
        ("year", (2026, 3, 31, 23, 30), 4, date(2025, 4, 1), date(2026, 3, 31), "FY2026"),
        ("year", (2026, 4, 1, 0, 30), 4, date(2026, 4, 1), date(2027, 3, 31), "FY2027"),
    ],
)
@pytest.mark.parametrize("tz", ["UTC", "America/Los_Angeles", "Asia/Tokyo", "Asia/Kolkata"])
def test_period_of_a_local_instant(kind, local, fiscal_start, start, end, label, tz):
    company = CompanySettings(timezone=tz, fiscal_year_start_month=fiscal_start)
    moment = datetime(*local, tzinfo=ZoneInfo(tz)).astimezone(UTC)
    period = period_of(kind, moment, company)
    assert (period.start, period.end, period.label()) == (start, end, label)
    assert period.contains(moment)


def test_a_deal_won_2330_local_on_the_last_day_belongs_to_the_quarter():
    company = CompanySettings(timezone="America/New_York")
    won = datetime(2026, 12, 31, 23, 30, tzinfo=ZoneInfo("America/New_York"))  # 04:30 UTC on Jan 1
    quarter = period_of("quarter", won, company)
    assert won.astimezone(UTC).date() == date(2027, 1, 1)
    assert (quarter.start, quarter.end) == (date(2026, 10, 1), date(2026, 12, 31))
    assert quarter.contains(won)
    assert not quarter.next().contains(won)
    assert quarter.end_utc == datetime(2027, 1, 1, 5, tzinfo=UTC)


@pytest.mark.parametrize(
    ("moment", "share"),
    [
        (datetime(2026, 9, 30, 23, tzinfo=UTC), 0.0),
        (datetime(2026, 10, 1, tzinfo=UTC), 0.0),
        (datetime(2026, 11, 15, 12, tzinfo=UTC), 45.5 / 92),
        (datetime(2027, 1, 1, tzinfo=UTC), 1.0),
        (datetime(2027, 3, 1, tzinfo=UTC), 1.0),
    ],
)
def test_elapsed_share_is_clamped_time(moment, share):
    quarter = period_of("quarter", datetime(2026, 11, 1, tzinfo=UTC), CompanySettings())
    assert quarter.elapsed(moment) == pytest.approx(share)
    if moment >= quarter.start_utc:
        assert quarter.days_left(moment) == pytest.approx(92 * (1 - share))


NAIVE_BOUNDS = (datetime(2000, 1, 1), datetime(2090, 1, 1))  # noqa: DTZ001 (hypothesis takes naive bounds)


@given(
    moment=st.datetimes(*NAIVE_BOUNDS, timezones=st.just(UTC)),
    kind=st.sampled_from(PERIOD_KINDS),
    fiscal_start=st.integers(1, 12),
    tz=st.sampled_from(["UTC", "Europe/Berlin", "Pacific/Auckland", "America/Sao_Paulo"]),
)
def test_periods_tile_time(moment, kind, fiscal_start, tz):
    period = period_of(kind, moment, CompanySettings(timezone=tz, fiscal_year_start_month=fiscal_start))
    assert period.contains(moment)
    assert 0.0 <= period.elapsed(moment) < 1.0
    assert period.next().start == period.end + timedelta(days=1)
    assert period.previous().next() == period
    assert period.previous().end_utc == period.start_utc
    if kind == "year":
        assert period.start.month == fiscal_start
        assert period.days in (365, 366)
