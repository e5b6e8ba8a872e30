"""A rule's cron ``schedule`` as an APScheduler trigger, with cron's own day-of-week numbers.

APScheduler 3's ``CronTrigger.from_crontab`` reads day-of-week numbers with 0 = Monday, so
the crontab line every admin knows, ``0 9 * * 1-5`` (weekdays at nine), would fire Tuesday to
Saturday. We translate numeric days (0 and 7 = Sunday, as in cron) into day names first,
which APScheduler reads unambiguously. Use :func:`cron_trigger`, never ``from_crontab``.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from apscheduler.triggers.cron import CronTrigger

CRON_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat", "sun")
_NUMERIC = re.compile(r"(\*|\d+)(?:-(\d+))?(?:/(\d+))?")


def _day_names(field: str) -> str:
    """Cron day-of-week field -> APScheduler field with names (0-7, Sunday = 0 or 7)."""
    if field == "*":
        return field
    days: list[str] = []
    for part in field.split(","):
        match = _NUMERIC.fullmatch(part)
        if match is None:  # names (mon-fri) or something APScheduler will reject with its reason
            return field
        start, end, step = match.groups()
        if start == "*":
            first, last = 0, 6
        else:
            first = int(start)
            last = int(end) if end is not None else (7 if step else first)
        if not (0 <= first <= last <= 7):
            raise ValueError(f"day of week '{part}': expected numbers 0-7 (0 and 7 are Sunday), low to high")
        every = int(step) if step else 1
        if every < 1:
            raise ValueError(f"day of week '{part}': the step must be at least 1")
        days += [CRON_DAYS[d] for d in range(first, last + 1, every)]
    return ",".join(dict.fromkeys(days))


def cron_trigger(expression: str, timezone: str) -> CronTrigger:
    """The trigger for a 5-field crontab line in the company time zone; ValueError says what is wrong.

    A sixth, leading field gives seconds (``*/5 * * * * *``): compressed schedules for the daemon's
    tests and soak runs; five fields fire at second 0.
    """
    fields = expression.split()
    if len(fields) not in (5, 6):
        raise ValueError(
            f"it has {len(fields)} fields, a cron line has 5: minute hour day month day-of-week "
            "(or 6, with seconds first)"
        )
    second = fields.pop(0) if len(fields) == 6 else "0"
    minute, hour, day, month, day_of_week = fields
    return CronTrigger(
        second=second,
        minute=minute,
        hour=hour,
        day=day,
        month=month,
        day_of_week=_day_names(day_of_week),
        timezone=ZoneInfo(timezone),
    )


def scheduled_time(trigger: CronTrigger, now: datetime, grace: timedelta) -> datetime | None:
    """The fire time a job running at ``now`` is for: the latest one at most ``grace`` ago.

    APScheduler runs a job no later than its misfire grace after its fire time and coalesces
    missed runs into the latest, so that fire time names the run (the digest is keyed on it: a
    second leader or a re-run for the same time finds it queued). None: no fire time in the grace.
    """
    fire, latest = trigger.get_next_fire_time(None, now - grace), None
    while fire is not None and fire <= now:
        latest = fire
        fire = trigger.get_next_fire_time(fire, fire + timedelta(microseconds=1))
    return latest
