"""Deal-hygiene findings grouped per owner: one finding per rep, naming their worst deals.

An ops lead acts on hygiene rep by rep ("Ana, these five deals have gone quiet"), so
``deal_no_activity`` and ``close_date_slipped`` flag deals in SQL and report them per
owner, once: the count flagged among the owner's open deals, their amount, the worst cases.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from pydantic import Field
from sqlalchemy import ColumnElement, FromClause, Select, Subquery, and_, func, select

from models.tables import opportunities, reps
from rules.findings import Evaluation, SampleRecord, Subject
from rules.model import Rule, Scope, SeverityTiers, Warehouse
from rules.scoping import rep_condition
from rules.stage_label import stage_label
from rules.verdicts import KindParams, deal_sample, grade, make_finding, tiers

# What a sample names of a deal that the open-deal index holds; a kind's ``deals`` subquery starts with these
# columns. The name and the CRM link are read from the rows of the deals shown only: read for every deal of
# the owners named, they were the pass's cost on PostgreSQL (a heap fetch each, 0.23 s of 0.25 s at a
# million deals).
SAMPLE_COLUMNS = ("id", "owner_id", "amount_reporting", "source", "pipeline", "stage")


class OwnerParams(KindParams):
    """Params of every per-owner hygiene kind."""

    min_deals: int = Field(1, ge=1)  # an owner needs this many flagged deals to be named


def sample_columns(deals: FromClause) -> list[ColumnElement]:
    """The ``SAMPLE_COLUMNS`` of an open-deals subquery, for a kind's ``deals`` select."""
    return [deals.c[name] for name in SAMPLE_COLUMNS]


@dataclass(frozen=True)
class OwnerTally:
    """One owner's open deals in scope and how many of them were flagged."""

    owner_id: str
    name: str
    team: str | None
    open_deals: int
    flagged: int
    flagged_amount: float
    worst_days: float


def owner_figures(deals: Subquery) -> Select:
    """Per owner of ``deals`` (one row per open deal with ``owner_id``, ``flagged`` (0/1), ``amount_reporting``
    and ``days``, how bad, for the worst case): open deals, flagged, their amount, the worst days."""
    return select(
        deals.c.owner_id,
        func.count().label("deals"),
        func.sum(deals.c.flagged).label("flagged"),
        func.coalesce(func.sum(func.coalesce(deals.c.amount_reporting, 0) * deals.c.flagged), 0).label("amount"),
        func.max(func.coalesce(deals.c.days, 0) * deals.c.flagged).label("worst"),
    ).group_by(deals.c.owner_id)


def owner_tallies(warehouse: Warehouse, figures: Subquery, scope: Scope) -> list[OwnerTally]:
    """The owners with a flagged deal, from rows of :func:`owner_figures` (one per part of the open deals,
    :func:`rules.asof.per_part`, added up here), narrowed there by the deal's side of the scope; the
    owner's side (teams, reps) is applied here, to the owners.

    Grouped per owner before the owners are joined: a look-up of the owner per deal cost more than the
    rest of the pass (a third of a million open deals at the large scale).
    """
    f = figures.c
    per_owner = (
        select(
            f.owner_id,
            func.sum(f.deals).label("deals"),
            func.sum(f.flagged).label("flagged"),
            func.sum(f.amount).label("amount"),
            func.max(f.worst).label("worst"),
        )
        .group_by(f.owner_id)
        .having(func.sum(f.flagged) > 0)
        .subquery("per_owner")
    )
    o = per_owner.c
    query = (
        select(o.owner_id, reps.c.name, reps.c.team, o.deals, o.flagged, o.amount, o.worst)
        .join_from(per_owner, reps, reps.c.id == o.owner_id)
        .where(rep_condition(scope, reps))
    )
    rows = warehouse.conn.execute(query).all()
    return [
        OwnerTally(r[0], r[1], r[2], int(r[3]), int(r[4]), float(r[5] or 0), float(r[6] or 0))
        for r in sorted(rows, key=lambda r: r[0])
    ]


def worst_deals(
    warehouse: Warehouse, deals: Subquery, owners: list[str], limit: int
) -> dict[str, list[Mapping[str, Any]]]:
    """The ``limit`` flagged deals with the most ``days`` per owner (a window function: never all rows).

    ``deals`` has the ``SAMPLE_COLUMNS``, ``days`` and ``flagged``; any further column of it
    reaches the kind's ``describe`` (see :func:`owner_evaluation`) through the sample's row. The
    deal's ``name`` and ``crm_url`` are read here, from the rows of the deals chosen (so ``deals``
    must not carry columns of those names).
    """
    if not owners or limit <= 0:
        return {}
    rank = (
        func.row_number().over(partition_by=deals.c.owner_id, order_by=(deals.c.days.desc(), deals.c.id)).label("rank")
    )
    ranked = (
        select(*(c for c in deals.c if c.name not in ("stage", "flagged")),
               stage_label(deals.c.source, deals.c.pipeline, deals.c.stage).label("stage"), rank)
        .where(and_(deals.c.flagged == 1, deals.c.owner_id.in_(owners)))
        .subquery()
    )  # fmt: skip
    o = opportunities
    rows = warehouse.conn.execute(
        select(ranked, o.c.name, o.c.crm_url, reps.c.name.label("owner"))
        .join_from(ranked, reps, reps.c.id == ranked.c.owner_id)
        .join(o, o.c.id == ranked.c.id)
        .where(ranked.c.rank <= limit)
        .order_by(ranked.c.owner_id, ranked.c.rank)
    ).mappings()
    out: dict[str, list[Mapping[str, Any]]] = {}
    for r in rows:
        out.setdefault(r["owner_id"], []).append(r)
    return out


def owner_evaluation(
    rule: Rule,
    warehouse: Warehouse,
    now: datetime,
    deals: Subquery,
    params: OwnerParams,
    default_tiers: SeverityTiers,
    *,
    explain: Callable[[OwnerTally], str],
    baseline: float,
    tallies: list[OwnerTally],
    describe: Callable[[Mapping[str, Any]], str | None] | None = None,
) -> Evaluation:
    """A finding per owner whose flagged count (``tallies``) reaches the tiers (the kind's ``default_tiers``
    unless the rule sets its own) and ``params.min_deals``; ``deals`` is read for the samples of the owners
    named only; ``describe`` says why a sample deal was flagged.
    """
    chosen = tiers(rule, default_tiers)
    graded = []
    for tally in tallies:
        severity = grade(tally.flagged, chosen, "above") if tally.flagged >= params.min_deals else None
        if severity:
            graded.append((tally, severity))
    rows = worst_deals(warehouse, deals, [t.owner_id for t, _ in graded], params.max_samples)

    def samples(owner_id: str) -> tuple[SampleRecord, ...]:
        return tuple(
            replace(deal_sample(r), note=describe(r)) if describe else deal_sample(r) for r in rows.get(owner_id, ())
        )

    findings = tuple(
        make_finding(
            rule,
            now,
            subject=Subject("rep", t.owner_id, t.name, t.team),
            severity=severity,
            value=t.flagged,
            baseline=baseline,
            sample_size=t.open_deals,
            unit="count",
            explanation=explain(t),
            samples=samples(t.owner_id),
            details={
                "flagged_deals": t.flagged,
                "open_deals": t.open_deals,
                "flagged_amount": round(t.flagged_amount, 2),
                "worst_days": round(t.worst_days, 1),
            },
        )
        for t, severity in graded
    )
    return Evaluation(rule.id, rule.kind, now, findings)
