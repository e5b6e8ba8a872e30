"""``deal_no_activity``: open deals nobody has touched for N days, per owner.

A deal is idle at T when its last activity before T (or its creation, if it never had
one) is more than ``days`` days before T. Optionally only deals of at least ``min_amount``
(reporting currency) or in the named ``stages`` (late stages, where silence costs most).

Formula, per owner: flagged = #{open deals d : T - last_activity(d, T) > days}; the finding's
value is flagged (severity tiers on that count, default warn 1, critical 5), its baseline
the ``days`` limit, its sample size the owner's open deals in scope.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, ClassVar

from pydantic import Field
from sqlalchemy import ColumnElement, FromClause, Select, Subquery, and_, case, func, select, true

from models.sqltime import days_between
from models.tables import reps
from rules.asof import open_deals_at, per_part
from rules.findings import Evaluation
from rules.model import Rule, SeverityTiers, Warehouse
from rules.names import NameOf
from rules.owners import OwnerParams, OwnerTally, owner_evaluation, owner_figures, owner_tallies, sample_columns
from rules.scoping import deal_condition, deal_side
from rules.verdicts import plural

COUNTED = ("id", "source", "owner_id", "pipeline", "stage", "created_at", "amount_reporting", "last_activity_at")


class Params(OwnerParams):
    days: float = Field(21, gt=0)  # no activity for longer than this (healthy deals are touched every 1-2 weeks)
    min_amount: float = Field(0, ge=0)  # only deals of at least this amount (reporting currency)
    # only deals in these stages (api names or labels); empty: every open stage
    stages: tuple[Annotated[str, NameOf("stage")], ...] = ()


class DealNoActivity:
    name: ClassVar[str] = "deal_no_activity"
    Params: ClassVar[type[Params]] = Params
    default_tiers: ClassVar[SeverityTiers] = SeverityTiers(warn=1, critical=5)

    def evaluate(self, rule: Rule, warehouse: Warehouse, now: datetime) -> Evaluation:
        params = Params(**rule.params)

        def judged(d: FromClause, columns: list[ColumnElement], *, owners_joined: bool) -> Subquery:
            touched = func.coalesce(d.c.last_activity_at, d.c.created_at)
            idle = touched < now - timedelta(days=params.days)
            wanted = and_(
                deal_condition(rule.scope, d, reps) if owners_joined else deal_side(rule.scope, d),
                d.c.amount_reporting >= params.min_amount if params.min_amount else true(),
                func.lower(d.c.stage).in_([s.lower() for s in params.stages]) if params.stages else true(),
            )
            flagged = case((idle, 1), else_=0).label("flagged")
            days = case((idle, days_between(touched, now)), else_=None).label("days")  # of flagged deals only
            query = select(*columns, days, flagged)
            if owners_joined:
                query = query.join_from(d, reps, reps.c.id == d.c.owner_id)
            return query.where(wanted).subquery()

        # Counted from the columns the open-deal index holds (the owner's side of the scope applied per owner);
        # the owners named are read again from it for their samples (rules/owners.py reads the shown deals' rows).
        def figures(part: FromClause) -> Select:
            return owner_figures(judged(part, [part.c.owner_id, part.c.amount_reporting], owners_joined=False))

        tallies = owner_tallies(warehouse, per_part(now, COUNTED, figures), rule.scope)
        full = open_deals_at(now, COUNTED)
        deals = judged(full, sample_columns(full), owners_joined=True)

        def explain(t: OwnerTally) -> str:
            return (
                f"{t.name} has {plural(t.flagged, 'open deal')} (of {t.open_deals:,}) with no activity for more than "
                f"{params.days:g} days, the longest {t.worst_days:.0f} days; {t.flagged_amount:,.0f} in pipeline."
            )

        return owner_evaluation(
            rule,
            warehouse,
            now,
            deals,
            params,
            self.default_tiers,
            explain=explain,
            baseline=params.days,
            tallies=tallies,
        )
