"""Comparing the warehouse with the sandbox company it was synced from.

For each table, both sides are reduced to the same plain tuples (ids, references,
amounts to the cent, dates, instants to the millisecond), so "the warehouse equals the
company" is a set comparison plus a checksum that a test can print.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Engine, func, select, text

from models.sqltime import whole_days_between
from models.tables import activities, close_date_changes, opportunities, stage_changes
from models.tables import stage_move_days as m
from models.tables import stage_stay_days as y
from sandbox.company import GroundTruth
from sandbox.store import Store


def _instant(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}"


def _money(value: Any) -> str:
    return str(Decimal(str(value)).quantize(Decimal("0.01")))


def _day(value: Any) -> str | None:
    if value is None:
        return None
    return value.isoformat() if isinstance(value, date) else str(value)[:10]


# Per table: the store query (crm-native ids) and the warehouse query (external ids),
# each giving rows already in the same column order.
CHECKS: dict[str, tuple[str, str, tuple[Any, ...]]] = {
    "opportunities": (
        "SELECT id, owner_id, amount, currency, stage_id, close_date, is_closed, is_won, deleted_at IS NOT NULL"
        " FROM deals WHERE crm = :crm",
        "SELECT external_id, owner_id, amount, currency, stage, close_date, is_closed, is_won,"
        " deleted_at IS NOT NULL FROM opportunities WHERE source = :crm",
        (str, "ref", _money, str, str, _day, bool, bool, bool),
    ),
    "leads": (
        "SELECT id, owner_id, is_converted, deleted_at IS NOT NULL FROM leads WHERE crm = :crm",
        "SELECT external_id, owner_id, is_converted, deleted_at IS NOT NULL FROM leads WHERE source = :crm",
        (str, "ref", bool, bool),
    ),
    "reps": (
        "SELECT id, lower(email), manager_id, hired_on FROM users WHERE crm = :crm",
        "SELECT external_id, email, manager_id, hired_on FROM reps WHERE source = :crm",
        (str, str, "ref", _day),
    ),
    "stage_changes": (
        "SELECT h.deal_id, h.old_value, h.new_value, h.changed_at FROM deal_history h"
        " JOIN deals d ON d.crm = h.crm AND d.id = h.deal_id WHERE h.crm = :crm AND h.field = 'stage'",
        "SELECT opportunity_id, from_stage, to_stage, changed_at FROM stage_changes WHERE source = :crm",
        ("ref", str, str, _instant),
    ),
    # An activity of a deleted deal is deleted too (Salesforce does it; the sync does it for HubSpot).
    "activities": (
        "SELECT a.id, a.type, a.owner_id, a.deal_id, a.occurred_at, a.deleted_at IS NOT NULL OR EXISTS "
        "(SELECT 1 FROM deals d WHERE d.crm = a.crm AND d.id = a.deal_id AND d.deleted_at IS NOT NULL)"
        " FROM activities a WHERE a.crm = :crm",
        "SELECT external_id, type, rep_id, opportunity_id, occurred_at, deleted_at IS NOT NULL"
        " FROM activities WHERE source = :crm",
        (str, str, "ref", "ref", _instant, bool),
    ),
}


def _normalise(row: Any, kinds: tuple[Any, ...], source: str | None) -> tuple[Any, ...]:
    out = []
    for value, kind in zip(row, kinds, strict=True):
        if value is None:
            out.append(None)
        elif kind == "ref":
            text_value = str(value)
            out.append(text_value.split(":", 1)[1] if source and text_value.startswith(f"{source}:") else text_value)
        else:
            out.append(kind(value))
    return tuple(out)


# Where a CRM cannot give a column, compare the rest: HubSpot owners have no manager nor
# hire date (the owner's creation day stands for it, as the connector maps it), and
# HubSpot's property history also records each deal's starting stage (from_stage null),
# which the store keeps as the deal's first stage rather than as a change.
OVERRIDES: dict[tuple[str, str], tuple[str, str, tuple[Any, ...]]] = {
    ("hubspot", "reps"): (
        "SELECT id, lower(email), substr(created_at, 1, 10) FROM users WHERE crm = :crm",
        "SELECT external_id, email, hired_on FROM reps WHERE source = :crm",
        (str, str, _day),
    ),
    ("hubspot", "stage_changes"): (
        CHECKS["stage_changes"][0],
        CHECKS["stage_changes"][1] + " AND from_stage IS NOT NULL",
        CHECKS["stage_changes"][2],
    ),
}


def _check(crm: str, table: str) -> tuple[str, str, tuple[Any, ...]]:
    return OVERRIDES.get((crm, table), CHECKS[table])


def expected_rows(store: Store, truth: GroundTruth, crm: str, table: str) -> list[tuple[Any, ...]]:
    """The rows a correct sync of ``crm`` must produce, each once: everything but the invalid dirty records."""
    store_sql, _, kinds = _check(crm, table)
    invalid = {"opportunities": truth.invalid_ids(crm, "deals"), "leads": truth.invalid_ids(crm, "leads")}.get(
        table, set()
    )
    rows = store.connect().execute(store_sql.replace(":crm", "?"), (crm,))
    return [_normalise(tuple(r), kinds, None) for r in rows if r[0] not in invalid]


def expected(store: Store, truth: GroundTruth, crm: str, table: str) -> set[tuple[Any, ...]]:
    return set(expected_rows(store, truth, crm, table))


def differences(engine: Engine, store: Store, truth: GroundTruth, crm: str, table: str) -> str | None:
    """None when the warehouse holds each source row exactly once (same values), else what differs.

    Compared as multisets of whole rows, not by the warehouse's primary key (which makes a row
    unique by construction): a record stored twice under two ids, one missing, or one with a
    stale value (an extra row and a missing one) all show.
    """
    want = Counter(expected_rows(store, truth, crm, table))
    got = Counter(actual(engine, crm, table))
    if want == got:
        derived = {
            "stage_changes": (underived_stage_changes, stale_stage_rollups),
            "activities": (stale_last_activity,),
            "opportunities": (stale_close_date_history,),
        }
        return next(filter(None, (check(engine, crm) for check in derived.get(table, ()))), None)
    twice = sum(n - 1 for row, n in got.items() if n > 1)
    return (
        f"{crm} {table}: {sum((want - got).values())} missing, {sum((got - want).values())} extra or stale "
        f"({twice} stored more than once); e.g. missing {list(want - got)[:2]}, extra {list(got - want)[:2]}"
    )


def underived_stage_changes(engine: Engine, crm: str) -> str | None:
    """None when every stage change's ``entered_at`` is what the sync must derive, else the deals where not.

    Recomputed here from the warehouse's own rows, in Python: per deal in time order, a change entered its
    ``from_stage`` at the change before it, the first at the deal's creation. Compared per deal as a multiset
    of (changed_at, entered_at), so changes at the same instant (whose order is the id's) compare equal.
    """
    with engine.connect() as conn:
        created = dict(
            conn.execute(text("SELECT id, created_at FROM opportunities WHERE source = :crm"), {"crm": crm}).all()
        )
        rows = conn.execute(
            text("SELECT opportunity_id, changed_at, entered_at FROM stage_changes WHERE source = :crm"), {"crm": crm}
        ).all()
    by_deal: dict[str, list[tuple[str, str | None]]] = {}
    for deal, changed, entered in rows:
        by_deal.setdefault(deal, []).append((_instant(changed), _instant(entered)))
    wrong = []
    for deal, got in by_deal.items():
        times = sorted(changed for changed, _ in got)
        previous = [_instant(created[deal]) if deal in created else times[0], *times[:-1]]
        if sorted(got) != sorted(zip(times, previous, strict=True)):
            wrong.append(deal)
    if not wrong:
        return None
    return f"{crm} stage_changes: entered_at wrong on {len(wrong)} of {len(by_deal)} deals, e.g. {sorted(wrong)[:3]}"


def stale_stage_rollups(engine: Engine, crm: str) -> str | None:
    """None when the per-day stage rollups hold what the warehouse's stage changes add up to, else how not.

    Grouped here in Python from the rows (changes with a from_stage, of deals neither deleted nor stale, by
    the UTC day of the change and the deal's pipeline); only the whole days in stage come from SQL, with the
    same day arithmetic the sync uses, so the check is about which rows the sync counted, not rounding.
    """
    sc, o = stage_changes, opportunities
    spent = whole_days_between(sc.c.entered_at, sc.c.changed_at)
    with engine.connect() as conn:
        rows = conn.execute(
            select(sc.c.changed_at, o.c.pipeline, sc.c.from_stage, sc.c.to_stage, sc.c.entered_at, spent)
            .join(o, o.c.id == sc.c.opportunity_id)
            .where(o.c.source == crm, sc.c.from_stage.is_not(None), o.c.deleted_at.is_(None),
                   o.c.quarantine_id.is_(None))
        ).all()  # fmt: skip
        got_moves = Counter({tuple(r[:-1]): r[-1] for r in conn.execute(
            select(m.c.day, m.c.pipeline, m.c.from_stage, m.c.to_stage, m.c.moves).where(m.c.source == crm)
        )})  # fmt: skip
        got_stays = Counter({tuple(r[:-1]): r[-1] for r in conn.execute(
            select(y.c.day, y.c.pipeline, y.c.stage, y.c.days_in_stage, y.c.exits).where(y.c.source == crm)
        )})  # fmt: skip
    want_moves, want_stays = Counter(), Counter()
    for changed, pipeline, before, after, entered, days in rows:
        day = changed.astimezone(UTC).date()
        want_moves[(day, pipeline, before, after)] += 1
        if entered is not None:
            want_stays[(day, pipeline, before, days)] += 1
    for name, want, got in (("stage_move_days", want_moves, got_moves), ("stage_stay_days", want_stays, got_stays)):
        if want != got:
            return (
                f"{crm} {name}: {sum((want - got).values())} counted too few, {sum((got - want).values())} too "
                f"many; e.g. missing {sorted(want - got)[:2]}, extra {sorted(got - want)[:2]}"
            )
    return None


def stale_last_activity(engine: Engine, crm: str) -> str | None:
    """None when every deal with activities carries the latest of them as ``last_activity_at``, else which not.

    The sync derives it from the activities it stored; the CRM's own field (a day, on Salesforce) is only
    the fallback for a deal with none. A run killed after storing activities but before deriving must not
    leave the deal with the CRM's value.
    """
    o, a = opportunities, activities
    latest = (
        select(a.c.opportunity_id, func.max(a.c.occurred_at).label("latest"))
        .where(a.c.source == crm, a.c.deleted_at.is_(None), a.c.opportunity_id.is_not(None))
        .group_by(a.c.opportunity_id)
        .subquery()
    )
    with engine.connect() as conn:
        rows = conn.execute(
            select(o.c.id, o.c.last_activity_at, latest.c.latest)
            .join(latest, latest.c.opportunity_id == o.c.id)
            .where(o.c.source == crm)
        ).all()
    wrong = sorted(deal for deal, got, want in rows if _instant(got) != _instant(want))
    if not wrong:
        return None
    return f"{crm} opportunities: last_activity_at stale on {len(wrong)} of {len(rows)} deals, e.g. {wrong[:3]}"


def stale_close_date_history(engine: Engine, crm: str) -> str | None:
    """None when every deal carries its close-date push count, latest change and the date that change moved from
    as its changes say, else which not.

    Counted here in Python from the rows: a push is a change to a later date (dates compared as dates); the
    latest change is the last in (changed_at, id) order.
    """
    o, cdc = opportunities, close_date_changes
    with engine.connect() as conn:
        deals = {
            deal: (pushes, _instant(latest), _day(previous))
            for deal, pushes, latest, previous in conn.execute(
                select(o.c.id, o.c.close_date_pushes, o.c.close_date_changed_at, o.c.close_date_previous).where(
                    o.c.source == crm
                )
            )
        }
        # In (changed_at, id) order as the database sorts it (ids compare by its collation, not Python's)
        changes = conn.execute(
            select(cdc.c.opportunity_id, cdc.c.old_date, cdc.c.new_date, cdc.c.changed_at)
            .where(cdc.c.source == crm)
            .order_by(cdc.c.opportunity_id, cdc.c.changed_at, cdc.c.id)
        ).all()
    pushes: dict[str, int] = dict.fromkeys(deals, 0)
    latest: dict[str, tuple] = {}
    for deal, old, new, changed in changes:
        if deal not in deals:
            continue
        pushes[deal] += old is not None and new is not None and _day(new) > _day(old)
        latest[deal] = (_instant(changed), _day(old))  # the last one read is the latest
    want = {deal: (pushes[deal], *latest[deal]) if deal in latest else (0, None, None) for deal in deals}
    wrong = sorted(deal for deal, got in deals.items() if got != want[deal])
    if not wrong:
        return None
    return (
        f"{crm} opportunities: close_date_pushes / close_date_changed_at / close_date_previous stale on "
        f"{len(wrong)} of {len(deals)} deals, e.g. {[(d, deals[d], want[d]) for d in wrong[:2]]}"
    )


def actual(engine: Engine, source: str, table: str) -> list[tuple[Any, ...]]:
    _, warehouse_sql, kinds = _check(source, table)
    with engine.connect() as conn:
        return [_normalise(tuple(r), kinds, source) for r in conn.execute(text(warehouse_sql), {"crm": source})]


def checksum(rows: set[tuple[Any, ...]] | list[tuple[Any, ...]]) -> str:
    digest = hashlib.sha256()
    for row in sorted(rows, key=repr):
        digest.update(repr(row).encode())
    return digest.hexdigest()[:16]
