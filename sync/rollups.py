"""Keep the per-day stage rollups (``stage_move_days``, ``stage_stay_days``) equal to what they count.

Why whole days are rebuilt and counts never adjusted: a run rewrites deals (pipeline moved,
deleted, marked stale) and changes (re-read, ``entered_at`` re-derived) without knowing what
each row counted for before. A day's rows recomputed from ``stage_changes`` are right whatever
changed, so the days rebuilt are every day that may count differently: the days of changes
written since the derive watermark or whose ``entered_at`` moved, and every day of a deal whose
standing in the rollups changed (deletes and stale marks move ``synced_at`` too; the standing
the rollups last counted is on the row). Adjacent days are rebuilt as one range, so a first
sync is one grouped pass over all changes.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import ColumnElement, Connection, Select, and_, case, delete, func, insert, select, union, update

from models.sqltime import utc_day, whole_days_between
from models.tables import opportunities, stage_changes, stage_move_days, stage_stay_days


def counted() -> ColumnElement[bool]:
    """Which deals the rollups count: not deleted, not stale (deals deleted later are added back by readers)."""
    o = opportunities.c
    return and_(o.deleted_at.is_(None), o.quarantine_id.is_(None))


def _moves(source: str, start: datetime | None, end: datetime | None) -> Select:
    sc, o = stage_changes, opportunities
    day = utc_day(sc.c.changed_at)
    return (
        select(day, o.c.source, o.c.pipeline, sc.c.from_stage, sc.c.to_stage, func.count())
        .join_from(sc, o, o.c.id == sc.c.opportunity_id)
        .where(o.c.source == source, sc.c.from_stage.is_not(None), counted(), *_between(start, end))
        .group_by(day, o.c.source, o.c.pipeline, sc.c.from_stage, sc.c.to_stage)
    )


def _stays(source: str, start: datetime | None, end: datetime | None) -> Select:
    sc, o = stage_changes, opportunities
    day, spent = utc_day(sc.c.changed_at), whole_days_between(sc.c.entered_at, sc.c.changed_at)
    return (
        select(day, o.c.source, o.c.pipeline, sc.c.from_stage, spent, func.count())
        .join_from(sc, o, o.c.id == sc.c.opportunity_id)
        .where(
            o.c.source == source,
            sc.c.from_stage.is_not(None),
            sc.c.entered_at.is_not(None),
            counted(),
            *_between(start, end),
        )
        .group_by(day, o.c.source, o.c.pipeline, sc.c.from_stage, spent)
    )


def _between(start: datetime | None, end: datetime | None) -> list[ColumnElement[bool]]:
    sc = stage_changes.c
    return [sc.changed_at >= start, sc.changed_at < end] if start and end else []


def midnight(day: date) -> datetime:
    return datetime.combine(day, time(), tzinfo=UTC)


def day_ranges(days: list[date]) -> list[tuple[date, date]]:
    """Sorted days as (first, last) runs of consecutive days."""
    runs: list[tuple[date, date]] = []
    for day in sorted(set(days)):
        if runs and day == runs[-1][1] + timedelta(days=1):
            runs[-1] = (runs[-1][0], day)
        else:
            runs.append((day, day))
    return runs


def rebuild(conn: Connection, source: str, first: date | None = None, last: date | None = None) -> None:
    """The rollup rows of ``source`` for the days first..last (both None: all days) recomputed."""
    start, end = (midnight(first), midnight(last + timedelta(days=1))) if first and last else (None, None)
    for table, rows in ((stage_move_days, _moves), (stage_stay_days, _stays)):
        gone = delete(table).where(table.c.source == source)
        if first and last:
            gone = gone.where(table.c.day >= first, table.c.day <= last)
        conn.execute(gone)
        columns = [c.name for c in table.c]
        conn.execute(insert(table).from_select(columns, rows(source, start, end)))


def refresh(conn: Connection, source: str, since: datetime, rederived: Iterable[date] = ()) -> int:
    """Rebuild the days whose counts may have changed since ``since``; returns how many days.

    Those are the days of the stage changes written since; ``rederived``, the days of changes whose
    ``entered_at`` the derive step moved (time in stage); and every day of a deal written since whose
    standing changed: the pipeline the rollups count it under, or whether they count it at all
    (deleted, stale, back), known from the ``rollup_pipeline`` the last refresh left on its row. A deal
    rewritten for its amount or name changes no day.
    """
    sc, o = stage_changes, opportunities
    standing = case((counted(), o.c.pipeline), else_=None)
    moved = and_(o.c.source == source, o.c.synced_at >= since, o.c.rollup_pipeline.is_distinct_from(standing))
    day = utc_day(sc.c.changed_at)
    found = union(
        select(day).where(sc.c.source == source, sc.c.synced_at >= since, sc.c.from_stage.is_not(None)),
        select(day).where(sc.c.opportunity_id.in_(select(o.c.id).where(moved)), sc.c.from_stage.is_not(None)),
    )
    days = {_as_date(d) for d in conn.execute(found).scalars()} | set(rederived)
    for first, last in day_ranges(list(days)):
        rebuild(conn, source, first, last)
    conn.execute(update(o).where(moved).values(rollup_pipeline=standing))
    return len(days)


def _as_date(value: date | str) -> date:
    """SQLite hands back ``date()`` as text."""
    return value if isinstance(value, date) else date.fromisoformat(value)
