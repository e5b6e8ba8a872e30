"""Fiscal periods (month, quarter, year) in the company's time zone and fiscal calendar.

Why one module: quota attainment, coverage, the digest and the funnel rules must agree on
when "this quarter" starts and how much of it has passed, or the same rep would be on pace
in one message and behind in the next. A period is a run of whole local calendar days; its
UTC bounds are local midnights converted to UTC, so a deal won at 23:30 local time on the
period's last day belongs to that period whatever the UTC offset.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from models.settings import CompanySettings

PeriodKind = Literal["month", "quarter", "year"]
PERIOD_KINDS: tuple[PeriodKind, ...] = ("month", "quarter", "year")
_MONTHS = {"month": 1, "quarter": 3, "year": 12}


def _add_months(day: date, months: int) -> date:
    """The first of the month ``months`` after ``day``'s month (``day`` is a first of month)."""
    index = day.year * 12 + day.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


@dataclass(frozen=True)
class Period:
    """One fiscal period: local days ``start`` .. ``end`` (inclusive) in ``timezone``."""

    kind: PeriodKind
    start: date
    end: date  # inclusive
    timezone: str
    fiscal_year_start_month: int = 1

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def start_utc(self) -> datetime:
        """The instant the period begins: local midnight of ``start``, in UTC."""
        return datetime.combine(self.start, time(0), self.zone).astimezone(UTC)

    @property
    def end_utc(self) -> datetime:
        """The instant the period ends (exclusive): local midnight after ``end``, in UTC."""
        return datetime.combine(self.end + timedelta(days=1), time(0), self.zone).astimezone(UTC)

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    def contains(self, moment: datetime) -> bool:
        return self.start_utc <= moment < self.end_utc

    def elapsed(self, now: datetime) -> float:
        """Share of the period's time that has passed at ``now``, 0..1 (by the clock, so DST days count as they are)."""
        start, end = self.start_utc, self.end_utc
        return min(1.0, max(0.0, (now - start) / (end - start)))

    def days_left(self, now: datetime) -> float:
        """Days (of 24 h) from ``now`` to the period's end, 0 once it is over."""
        return max(0.0, (self.end_utc - now) / timedelta(days=1))

    def previous(self) -> Period:
        start = _add_months(self.start, -_MONTHS[self.kind])
        return Period(self.kind, start, self.start - timedelta(days=1), self.timezone, self.fiscal_year_start_month)

    def next(self) -> Period:
        start = _add_months(self.start, _MONTHS[self.kind])
        end = _add_months(start, _MONTHS[self.kind]) - timedelta(days=1)
        return Period(self.kind, start, end, self.timezone, self.fiscal_year_start_month)

    def overlap_days(self, first: date, last: date) -> int:
        """How many days of ``first`` .. ``last`` (inclusive) fall in this period."""
        return max(0, (min(last, self.end) - max(first, self.start)).days + 1)

    def label(self) -> str:
        """'FY2026 Q3', 'FY2026 M07', 'FY2026' — fiscal years are named by the calendar year they end in."""
        fiscal_year_end = _add_months(self.start, 12 - self._index() * _MONTHS[self.kind]) - timedelta(days=1)
        if self.kind == "year":
            return f"FY{fiscal_year_end.year}"
        prefix = "Q" if self.kind == "quarter" else "M"
        return f"FY{fiscal_year_end.year} {prefix}{self._index() + 1:0{1 if prefix == 'Q' else 2}d}"

    def _index(self) -> int:
        """Position of this period in its fiscal year (0-based)."""
        months = (self.start.month - self.fiscal_year_start_month) % 12
        return months // _MONTHS[self.kind]


def local_day(moment: datetime, company: CompanySettings) -> date:
    """The company's calendar day at ``moment``."""
    return moment.astimezone(ZoneInfo(company.timezone)).date()


def period_of(kind: PeriodKind, moment: datetime, company: CompanySettings) -> Period:
    """The fiscal ``kind`` period that contains ``moment`` (an aware instant)."""
    if moment.tzinfo is None:
        raise ValueError("period_of needs an aware datetime")
    if kind not in _MONTHS:
        raise ValueError(f"unknown period {kind!r}; expected one of {', '.join(PERIOD_KINDS)}")
    day = local_day(moment, company)
    length = _MONTHS[kind]
    months_into_year = (day.month - company.fiscal_year_start_month) % 12
    first_of_month = date(day.year, day.month, 1)
    start = _add_months(first_of_month, -(months_into_year % length))
    end = _add_months(start, length) - timedelta(days=1)
    return Period(kind, start, end, company.timezone, company.fiscal_year_start_month)
