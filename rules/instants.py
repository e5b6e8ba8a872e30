"""Instants and durations as admins type them: ``--as-of``, ``--from`` / ``--to``, ``--every``, rule-test ``at``.

A bare date means 00:00 of that day in the company time zone (the start of the day, as
``date.fromisoformat`` reads it); a datetime must carry its offset (``Z`` or ``+02:00``),
because "09:00" alone is a different instant in every office.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*")
DURATION_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_duration(text: str) -> timedelta | None:
    """'30m', '4h', '1d', '2w' -> timedelta; None when the text is not of that form."""
    match = DURATION.fullmatch(text)
    if match is None:
        return None
    return timedelta(**{DURATION_UNITS[match.group(2)]: float(match.group(1))})


def instant_of(value: date | datetime, timezone: str) -> datetime:
    """A date (its 00:00 in the company time zone) or an aware datetime, as an aware UTC datetime.

    A naive datetime is read in the company time zone (rule-test files written by hand).
    """
    tz = ZoneInfo(timezone)
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=tz)).astimezone(UTC)
    return datetime.combine(value, time(0), tzinfo=tz).astimezone(UTC)


def parse_instant(text: str, timezone: str) -> datetime:
    """``--as-of`` text -> aware UTC datetime; ValueError says what was expected."""
    expected = (
        "expected a date (2026-03-31, read in the company time zone) or a datetime with offset (2026-03-31T09:00:00Z)"
    )
    text = text.strip()
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        try:
            return instant_of(date.fromisoformat(text), timezone)
        except ValueError:
            raise ValueError(f"'{text}' is not a date; {expected}") from None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"'{text}' is not a date or datetime; {expected}") from None
    if moment.tzinfo is None:
        raise ValueError(f"'{text}' has no time zone offset; {expected}")
    return moment.astimezone(UTC)
