"""Stage moves and stays of a window of time, read from the sync's per-day rollups where they can be.

A window (lo, hi] is: the whole UTC days inside it, from ``stage_move_days`` /
``stage_stay_days``; the changes of its two partial edge days, from ``stage_changes``; and the
changes inside it of deals deleted after the evaluation instant (the rollups count the deals
not deleted; as of an earlier instant those were alive). So the cost is a few rows per day of
the window plus two days of raw changes, not every change of the window. A scope naming teams
or reps needs each deal's owner, which the rollups do not keep: then the whole window is read
raw. Both ways count the same changes: those with a ``from_stage``, of deals alive at the
instant and not stale, under the deal's current source and pipeline.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import ColumnElement, Select, and_, func, select

from models.sqltime import whole_days_between
from models.tables import opportunities, reps, stage_changes, stage_move_days, stage_stay_days
from rules.asof import alive_at
from rules.model import Scope, Warehouse
from rules.scoping import deal_condition, pipeline_condition, source_condition
from sync.rollups import midnight

Move = tuple[str, str, str, str]  # source, pipeline, from stage, to stage
Histograms = dict[tuple[str, ...], Counter[int]]  # (source, pipeline[, stage]) -> whole days in stage -> exits


def uses_rollups(scope: Scope) -> bool:
    """The rollups keep no owner: a scope by team or rep is read raw."""
    return not (scope.teams or scope.exclude_teams or scope.reps or scope.exclude_reps)


def _split(lo: datetime, hi: datetime, now: datetime) -> tuple[tuple[date, date] | None, list[ColumnElement[bool]]]:
    """The whole days of (lo, hi] and the raw conditions on ``changed_at`` for the rest of it."""
    at = stage_changes.c.changed_at
    first = lo.astimezone(UTC).date() + timedelta(days=1)
    last = hi.astimezone(UTC).date() - timedelta(days=1)
    if first > last:
        return None, [and_(at > lo, at <= hi)]
    edges = [and_(at > lo, at < midnight(first)), and_(at >= midnight(last + timedelta(days=1)), at <= hi)]
    # Deals deleted after the instant are not in the rollups; their changes of the whole days are read raw,
    # found from the deals (few; none when the instant is now), not from a scan of the window.
    gone = opportunities.alias("gone")
    later = select(gone.c.id).where(gone.c.deleted_at > now)
    deleted_later = and_(stage_changes.c.opportunity_id.in_(later), at >= midnight(first),
                         at < midnight(last + timedelta(days=1)))  # fmt: skip
    return (first, last), [*edges, deleted_later]


def _raw(query: Select, scope: Scope, now: datetime, window: ColumnElement[bool]) -> Select:
    sc, o = stage_changes, opportunities
    query = query.join_from(sc, o, o.c.id == sc.c.opportunity_id)
    if uses_rollups(scope):
        where = and_(pipeline_condition(scope, o.c.pipeline), source_condition(scope, o.c.source))
    else:
        query, where = query.join(reps, reps.c.id == o.c.owner_id), deal_condition(scope, o, reps)
    return query.where(sc.c.from_stage.is_not(None), alive_at(o, now), where, window)


def _read(
    warehouse: Warehouse,
    lo: datetime,
    hi: datetime,
    now: datetime,
    scope: Scope,
    raw: Callable[[ColumnElement[bool]], Select],
    rolled: Callable[[date, date], Select],
) -> list[tuple]:
    at = stage_changes.c.changed_at
    days, windows = _split(lo, hi, now) if uses_rollups(scope) else (None, [and_(at > lo, at <= hi)])
    rows: list[tuple] = []
    for window in windows:
        rows.extend(warehouse.conn.execute(raw(window)).all())
    if days is not None:
        rows.extend(warehouse.conn.execute(rolled(*days)).all())
    return rows


def moves(warehouse: Warehouse, lo: datetime, hi: datetime, now: datetime, scope: Scope) -> Counter[Move]:
    """Stage changes in (lo, hi] per (source, pipeline, from stage, to stage)."""
    sc, o, m = stage_changes, opportunities, stage_move_days
    keys = (o.c.source, o.c.pipeline, sc.c.from_stage, sc.c.to_stage)

    def raw(window: ColumnElement[bool]) -> Select:
        return _raw(select(*keys, func.count()), scope, now, window).group_by(*keys)

    def rolled(first: date, last: date) -> Select:
        rolled_keys = (m.c.source, m.c.pipeline, m.c.from_stage, m.c.to_stage)
        return (
            select(*rolled_keys, func.sum(m.c.moves))
            .where(m.c.day >= first, m.c.day <= last, pipeline_condition(scope, m.c.pipeline),
                   source_condition(scope, m.c.source))
            .group_by(*rolled_keys)
        )  # fmt: skip

    counted: Counter[Move] = Counter()
    for source, pipeline, before, after, n in _read(warehouse, lo, hi, now, scope, raw, rolled):
        counted[(source, pipeline, before, after)] += int(n)
    return counted


def stays(
    warehouse: Warehouse, lo: datetime, hi: datetime, now: datetime, scope: Scope, *, by_stage: bool
) -> Histograms:
    """Whole days spent in the stage left, of each change in (lo, hi], per (source, pipeline[, stage])."""
    sc, o, s = stage_changes, opportunities, stage_stay_days
    spent = whole_days_between(sc.c.entered_at, sc.c.changed_at)
    keys = (o.c.source, o.c.pipeline) + ((sc.c.from_stage,) if by_stage else ())

    def raw(window: ColumnElement[bool]) -> Select:
        query = _raw(select(*keys, spent, func.count()), scope, now, window)
        return query.where(sc.c.entered_at.is_not(None)).group_by(*keys, spent)

    def rolled(first: date, last: date) -> Select:
        rolled_keys = (s.c.source, s.c.pipeline) + ((s.c.stage,) if by_stage else ())
        return (
            select(*rolled_keys, s.c.days_in_stage, func.sum(s.c.exits))
            .where(s.c.day >= first, s.c.day <= last, pipeline_condition(scope, s.c.pipeline),
                   source_condition(scope, s.c.source))
            .group_by(*rolled_keys, s.c.days_in_stage)
        )  # fmt: skip

    histograms: Histograms = defaultdict(Counter)
    for *key, days, n in _read(warehouse, lo, hi, now, scope, raw, rolled):
        histograms[tuple(key)][max(0, int(days))] += int(n)
    return histograms
