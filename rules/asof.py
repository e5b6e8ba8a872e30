"""The warehouse as it stood at an instant T, rebuilt from its history, for ``check --as-of``.

What can be rebuilt: whether a record existed (created before T, not deleted by T), a deal's
stage and when it entered it (``stage_changes``), whether it was open (the stage it was in),
its expected close date and how often it had been pushed out (``close_date_changes``) and its
last activity before T. What cannot: past amounts, past owners, past names, a lead's past
status; those are today's.

Evaluating "now" must stay as fast as reading the deal rows, so the history is consulted only
for the rows that changed after T: a deal whose ``stage_entered_at`` (the last stage change,
kept by the sync) is at or before T was in the same stage at T; a deal whose ``updated_at``
is at or before T had the same close date; one whose ``close_date_changed_at`` is at or before T
(or null) had been pushed as often; one whose ``last_activity_at`` is at or before T
had the same last activity. ``CASE`` runs the history subqueries for the others only.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from sqlalchemy import (
    ColumnElement,
    FromClause,
    Select,
    Subquery,
    and_,
    case,
    false,
    func,
    or_,
    select,
    union_all,
)

from models.tables import activities, close_date_changes, opportunities, stage_changes, stages

OPEN_DEAL_COLUMNS = (
    "id",
    "source",
    "name",
    "owner_id",
    "pipeline",
    "stage",
    "stage_entered_at",
    "created_at",
    "amount_reporting",
    "close_date",
    "last_activity_at",
    "crm_url",
)
# On request only: the pushes at ``t`` cost a look-up per deal changed after ``t``; the instant of the latest
# close-date change and the date it moved from (ever, not at ``t``) say which deals can have changed in a window
# at all, and how the latest change moved them.
CLOSE_DATE_HISTORY = ("close_date_pushes", "close_date_changed_at", "close_date_previous")


def alive_at(table: FromClause, t: datetime) -> ColumnElement[bool]:
    """Not deleted by ``t`` (a record deleted later still counted then), and not stale.

    A stale row (``quarantine_id`` set) is the last good version of a record whose newer CRM version
    sits in quarantine (reassigned to an unknown owner, amount erased): it no longer says what the
    CRM says, so no rule judges it until a valid version arrives (``status`` counts such rows).
    """
    alive = or_(table.c.deleted_at.is_(None), table.c.deleted_at > t)
    if "quarantine_id" in table.c:
        return and_(alive, table.c.quarantine_id.is_(None))
    return alive


def deal_exists_at(deal: FromClause, t: datetime) -> ColumnElement[bool]:
    return and_(deal.c.created_at <= t, alive_at(deal, t))


def close_date_at(deal: FromClause, t: datetime) -> ColumnElement:
    """The expected close date at ``t``: the old date of the first change after ``t``, if any."""
    cdc = close_date_changes
    before_change = (
        select(cdc.c.old_date)
        .where(cdc.c.opportunity_id == deal.c.id, cdc.c.changed_at > t)
        .order_by(cdc.c.changed_at, cdc.c.id)
        .limit(1)
        .scalar_subquery()
    )
    return case(
        (func.coalesce(deal.c.updated_at, deal.c.synced_at) > t, func.coalesce(before_change, deal.c.close_date)),
        else_=deal.c.close_date,
    )


def close_date_pushes_at(deal: FromClause, t: datetime) -> ColumnElement:
    """How many times the close date had been moved to a later date by ``t``: the sync's count on the row,
    or, for a deal whose close date changed after ``t``, its changes up to ``t`` counted."""
    cdc = close_date_changes
    counted = (
        select(func.count())
        .where(cdc.c.opportunity_id == deal.c.id, cdc.c.changed_at <= t, cdc.c.new_date > cdc.c.old_date)
        .scalar_subquery()
    )
    return case((deal.c.close_date_changed_at > t, counted), else_=deal.c.close_date_pushes)


def last_activity_at(deal: FromClause, t: datetime) -> ColumnElement:
    """The deal's latest activity at or before ``t`` (null: none yet)."""
    a = activities
    latest = (
        select(func.max(a.c.occurred_at))
        .where(a.c.opportunity_id == deal.c.id, a.c.occurred_at <= t, alive_at(a, t))
        .scalar_subquery()
    )
    return case((deal.c.last_activity_at > t, latest), else_=deal.c.last_activity_at)


def _stage_at(deal: FromClause, t: datetime) -> tuple[ColumnElement, ColumnElement]:
    """(stage, entered at) at ``t`` from the deal's stage changes.

    Before its first recorded change a deal sat in that change's ``from_stage`` (Salesforce
    records changes only); HubSpot also records the starting stage (``from_stage`` null).
    """
    sc = stage_changes
    mine = sc.c.opportunity_id == deal.c.id
    last_to = select(sc.c.to_stage).where(mine, sc.c.changed_at <= t).order_by(sc.c.changed_at.desc(), sc.c.id.desc())
    first_from = select(sc.c.from_stage).where(mine).order_by(sc.c.changed_at, sc.c.id)
    entered = select(func.max(sc.c.changed_at)).where(mine, sc.c.changed_at <= t).scalar_subquery()
    stage = func.coalesce(last_to.limit(1).scalar_subquery(), first_from.limit(1).scalar_subquery(), deal.c.stage)
    return stage, func.coalesce(entered, deal.c.created_at)


def open_deals_at(t: datetime, columns: tuple[str, ...] = OPEN_DEAL_COLUMNS) -> Subquery:
    """Every deal open at ``t``, with its state then (``columns``: some of ``OPEN_DEAL_COLUMNS``).

    Two parts (:func:`open_deal_parts`): deals whose stage has not changed since ``t`` and are
    open now (read from the row, through the open-deal index), and deals whose stage changed
    after ``t`` (rebuilt from ``stage_changes``; few when ``t`` is recent), kept when the stage
    they were in at ``t`` is an open one. Re-opened deals fall out right: a deal closed at ``t``
    and re-opened since was in a closed stage at ``t``. A rule asks for the columns it reads:
    the close date and last activity at ``t`` cost a look-up per deal.
    """
    return union_all(*open_deal_parts(t, columns)).subquery("open_deals")


def per_part(t: datetime, columns: tuple[str, ...], aggregate: Callable[[FromClause], Select]) -> Subquery:
    """``aggregate`` run on each part of the open deals at ``t`` on its own, the results unioned.

    A rule grouping the open deals per owner reads them from the open-deal index, which is in
    owner order: grouped one part at a time, the third of a million deals of the large scale
    stream through the grouping, where grouped over the union of both parts they were sorted
    first (0.5-1 s a pass). For what combines across the parts (count, sum, max, the first few
    in an order): the caller groups (or orders) the union again. One use per statement: the
    moved part is a named CTE.
    """
    unchanged, moved = open_deal_parts(t, columns)
    # The moved part is found through the stage_entered_at index; grouped per owner in place, SQLite would
    # rather walk every deal in owner order (seconds at a million deals). Materialized, it is grouped apart.
    moved_open = moved.cte("moved_open").prefix_with("MATERIALIZED")
    return union_all(aggregate(unchanged.subquery("unchanged")), aggregate(moved_open)).subquery("per_part")


def open_deal_parts(t: datetime, columns: tuple[str, ...] = OPEN_DEAL_COLUMNS) -> tuple[Select, Select]:
    """The deals open at ``t`` in two parts: unchanged since ``t`` (read from the row) and moved after it
    (their stage rebuilt), each with ``columns``."""
    o = opportunities
    wanted = [name for name in (*OPEN_DEAL_COLUMNS, *CLOSE_DATE_HISTORY) if name in columns]
    at_t = {
        "close_date": close_date_at(o, t).label("close_date"),
        "close_date_pushes": close_date_pushes_at(o, t).label("close_date_pushes"),
        "last_activity_at": last_activity_at(o, t).label("last_activity_at"),
    }
    unchanged = select(*(at_t.get(name, o.c[name]) for name in wanted)).where(
        o.c.is_closed == false(), o.c.stage_entered_at <= t, deal_exists_at(o, t)
    )
    stage, entered = _stage_at(o, t)
    rebuilt = {**at_t, "stage": stage.label("stage"), "stage_entered_at": entered.label("stage_entered_at")}
    keys = list(dict.fromkeys([*wanted, "source", "pipeline", "stage"]))
    moved = (
        select(*(rebuilt.get(name, o.c[name]) for name in keys))
        .where(o.c.stage_entered_at > t, deal_exists_at(o, t))
        .subquery("moved")
    )
    moved_open = (
        select(*(moved.c[name] for name in wanted))
        .join_from(
            moved,
            stages,
            and_(
                stages.c.source == moved.c.source,
                stages.c.pipeline == moved.c.pipeline,
                stages.c.api_name == moved.c.stage,
            ),
        )
        .where(stages.c.is_closed == false())
    )
    return unchanged, moved_open
