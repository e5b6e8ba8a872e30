"""Cron expressions as rule files and settings write them, turned into APScheduler triggers.

Why not ``CronTrigger.from_crontab``: APScheduler 3 numbers weekdays from Monday = 0, while
cron (and every admin) means Sunday = 0, so ``1-5`` would run Tuesday to Saturday (upstream
issue 286, fixed only in APScheduler 4). The day-of-week field is therefore expanded here to
day names. A sixth, leading field gives seconds (``*/5 * * * * *``): compressed schedules
for tests and the soak run; five fields mean second 0.
"""

from __future__ import annotations

import re

from apscheduler.triggers.cron import CronTrigger

_DAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_DAY_ALIASES = {name: number for number, name in enumerate(_DAY_NAMES)}
_TOKEN = re.compile(r"(?P<range>\*|[0-9a-z]{1,3}(?:-[0-9a-z]{1,3})?)(?:/(?P<step>\d+))?")


class CronError(ValueError):
    """Not a cron expression this daemon can schedule."""


def cron_trigger(expression: str, timezone: str) -> CronTrigger:
    """A trigger for a 5-field cron (minute hour day month weekday) or 6 fields with seconds first."""
    fields = expression.split()
    if len(fields) == 5:
        fields = ["0", *fields]
    if len(fields) != 6:
        raise CronError(
            f"cron {expression!r} has {len(expression.split())} fields; expected 5 "
            "(minute hour day-of-month month day-of-week, e.g. '0 9 * * 1-5') or 6 with seconds first"
        )
    second, minute, hour, day, month, weekday = fields
    try:
        return CronTrigger(
            second=second,
            minute=minute,
            hour=hour,
            day=day,
            month=month,
            day_of_week=_weekdays(weekday),
            timezone=timezone,
        )
    except ValueError as exc:
        raise CronError(f"cron {expression!r}: {exc}") from None


def _weekdays(field: str) -> str:
    """Cron's day-of-week field (0 or 7 = Sunday, names allowed) as APScheduler day names."""
    if field in ("*", "?"):
        return "*"
    days: set[int] = set()
    for token in field.lower().split(","):
        match = _TOKEN.fullmatch(token)
        if match is None:
            raise CronError(f"day of week {field!r}: expected numbers 0-7 or names sun-sat, ranges and steps")
        step = int(match["step"] or 1)
        if step < 1:
            raise CronError(f"day of week {field!r}: a step must be at least 1")
        if match["range"] == "*":
            first, last = 0, 6
        else:
            bounds = [_day_number(part, field) for part in match["range"].split("-")]
            first, last = bounds[0], bounds[-1]
            if len(bounds) == 2 and last == 0:
                last = 7  # '5-0' / '5-7': Friday to Sunday
            if last < first:
                raise CronError(f"day of week {field!r}: range {token!r} runs backwards")
        days.update(day % 7 for day in range(first, last + 1, step))
    return ",".join(_DAY_NAMES[day] for day in sorted(days))


def _day_number(text: str, field: str) -> int:
    if text.isdigit():
        if int(text) > 7:
            raise CronError(f"day of week {field!r}: {text} is not a day (0-7, 0 and 7 are Sunday)")
        return int(text)
    if text not in _DAY_ALIASES:
        raise CronError(f"day of week {field!r}: {text!r} is not a day name (sun-sat)")
    return _DAY_ALIASES[text]
