"""Silences (an admin mutes a rule, or one subject of it, for a while) and recurring mute windows.

A mute holds back notifications only: the alert still moves pending -> firing -> resolved, so
when the mute ends the alert is announced if it is still firing, and nothing is lost. Mute
windows (weekends, holidays, a quarter-end freeze) are days in the company time zone.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, Engine, insert, or_, select, update

from models.errors import ConfigError, FatalError
from models.settings import MuteWindow
from models.tables import silences
from rules.findings import Subject

_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([mhdw])")
_UNITS = {"m": timedelta(minutes=1), "h": timedelta(hours=1), "d": timedelta(days=1), "w": timedelta(weeks=1)}
_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def parse_duration(text: str) -> timedelta:
    """``90m``, ``2h``, ``7d``, ``1w``, or a sum such as ``1d12h``."""
    cleaned = text.strip().lower().replace(" ", "")
    parts = _DURATION.findall(cleaned)
    if not parts or "".join(f"{n}{u}" for n, u in parts) != cleaned:
        raise ConfigError(
            f"duration {text!r}: expected a number and a unit m, h, d or w, e.g. 7d", source="command line", key="--for"
        )
    total = sum((float(n) * _UNITS[u] for n, u in parts), timedelta())
    if total <= timedelta(0):
        raise ConfigError(f"duration {text!r}: must be longer than zero", source="command line", key="--for")
    return total


@dataclass(frozen=True)
class Silence:
    id: int
    rule_id: str
    subject: str | None
    comment: str
    created_by: str
    created_at: datetime
    ends_at: datetime
    expired_at: datetime | None

    def active(self, now: datetime) -> bool:
        return self.expired_at is None and self.created_at <= now < self.ends_at

    def matches(self, rule_id: str, subject: Subject) -> bool:
        if self.rule_id != rule_id:
            return False
        if self.subject is None:
            return True
        wanted = self.subject.casefold()
        return wanted in (subject.id.casefold(), subject.name.casefold())


def add_silence(
    engine: Engine,
    *,
    rule_id: str,
    subject: str | None,
    duration: timedelta,
    comment: str,
    by: str,
    now: datetime,
) -> Silence:
    with engine.begin() as conn:
        new_id = conn.execute(
            insert(silences).values(
                rule_id=rule_id,
                subject=subject,
                reason=comment,
                created_by=by,
                created_at=now,
                ends_at=now + duration,
            )
        ).inserted_primary_key[0]
    return Silence(new_id, rule_id, subject, comment, by, now, now + duration, None)


def list_silences(engine: Engine, now: datetime, *, include_ended: bool = False) -> list[Silence]:
    query = select(silences).order_by(silences.c.id)
    if not include_ended:
        query = query.where(silences.c.expired_at.is_(None), silences.c.ends_at > now)
    with engine.connect() as conn:
        return [_silence(r) for r in conn.execute(query)]


def active_silences(conn: Connection, now: datetime) -> list[Silence]:
    rows = conn.execute(
        select(silences).where(
            silences.c.expired_at.is_(None), silences.c.ends_at > now, or_(silences.c.created_at <= now)
        )
    )
    return [_silence(r) for r in rows]


def expire_silence(engine: Engine, silence_id: int, now: datetime) -> Silence:
    with engine.begin() as conn:
        row = conn.execute(select(silences).where(silences.c.id == silence_id)).one_or_none()
        if row is None:
            raise FatalError(f"no silence {silence_id}; 'python service.py silence list' shows them")
        found = _silence(row)
        if not found.active(now):
            raise FatalError(f"silence {silence_id} has already ended")
        conn.execute(update(silences).where(silences.c.id == silence_id).values(expired_at=now))
    return Silence(**{**found.__dict__, "expired_at": now})


def _silence(row: object) -> Silence:
    return Silence(
        row.id,  # type: ignore[attr-defined]
        row.rule_id,  # type: ignore[attr-defined]
        row.subject,  # type: ignore[attr-defined]
        row.reason,  # type: ignore[attr-defined]
        row.created_by,  # type: ignore[attr-defined]
        row.created_at,  # type: ignore[attr-defined]
        row.ends_at,  # type: ignore[attr-defined]
        row.expired_at,  # type: ignore[attr-defined]
    )


def silenced_by(found: Iterable[Silence], rule_id: str, subject: Subject, now: datetime) -> str | None:
    """The first active silence that covers this rule and subject, in words."""
    for s in found:
        if s.active(now) and s.matches(rule_id, subject):
            until = s.ends_at.strftime("%Y-%m-%d %H:%M UTC")
            return f"silenced by #{s.id} ({s.created_by}: {s.comment}) until {until}"
    return None


def in_mute_window(windows: Sequence[MuteWindow], rule_id: str, now: datetime, timezone: str) -> str | None:
    """The mute window holding now (company time zone) for this rule, in words."""
    local = now.astimezone(ZoneInfo(timezone)).date()
    for window in windows:
        if window.rules and rule_id not in window.rules:
            continue
        if _WEEKDAYS[local.weekday()] in window.weekdays or any(_on(local, spec) for spec in window.dates):
            return f"mute window '{window.name}' ({local.isoformat()}, {timezone})"
    return None


def _on(day: date, spec: str) -> bool:
    """Whether ``day`` falls in ``2026-12-24``, ``12-24`` (every year) or a range of either."""
    first, _, last = spec.partition("..")
    start, end = _day(first.strip(), day.year), _day((last or first).strip(), day.year)
    if len(first.strip()) == 5 and end < start:  # a yearly range over new year: 12-24..01-02
        return day >= start or day <= end
    return start <= day <= end


def _day(text: str, year: int) -> date:
    return date.fromisoformat(text if len(text) == 10 else f"{year}-{text}")
