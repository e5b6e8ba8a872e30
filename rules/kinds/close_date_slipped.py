"""``close_date_slipped``: open deals whose expected close date keeps moving out, per owner.

Two ways a deal's forecast stops meaning anything, both read from ``close_date_changes`` up to T:

- **pushed again and again**: a push is a change to a later date (new_date > old_date); a deal
  pushed ``min_pushes`` times or more is no longer forecast, it is hope;
- **pushed past the period end** (``past_period_end``, default on): during the current fiscal
  ``period`` (company time zone and fiscal year, ``rules/periods.py``), a change moved the
  deal's close date from inside the period to after its end, and at T it is still after the
  end (a deal pulled back in is forecast again). The period's forecast lost it. A date that
  was already after the end when the period began, or a move within the period, is not one.

Moving deals out of the quarter is ordinary selling: on the healthy sandbox reps have moved
30-78 % of their open deals out of the quarter by its middle (README). So the second condition
counts for an owner only when they stand out from the rest of the company: at least
``min_past_end`` such deals, a share ``past_end_excess`` points above the rest's, and a
one-sided binomial test below ``alpha``.

Formula, per owner o with open deals D_o in scope:
slipped(d) = pushes(d, T) >= min_pushes;
out(d) = exists a change c of d with period start <= c.changed_at <= T, period.start <= c.old_date
<= period.end < c.new_date, and close_date(d, T) > period.end; left(d) = c.old_date of the latest
such c (the sync keeps the latest change's old date on the row: the history is read only when that
change was not one). The row's shortcut takes the deal's close date at T for the latest change's new
date: where the CRM's history missed a change (tracking off for a while), a deal whose last recorded
change stayed in the period and whose date is now after its end left the period by an unrecorded
change, during it; it counts, and its sample names the last recorded date it moved from;
k = #{d in D_o : out(d)}, n = |D_o|, p_rest = (sum over the other owners of k) / (their n);
o's moved-out deals count when k >= min_past_end, k / n - p_rest >= past_end_excess and
P(X >= k | n, p_rest) < alpha (scipy.stats.binomtest);
flagged = #{d in D_o : slipped(d) or (out(d) and o's moved-out deals count)}.
The value is flagged (tiers default warn 1, critical 5), the baseline ``min_pushes``, the
sample size |D|. A sample's ``days`` is how far the close date moved (in all for a slipped
deal, out of the period for the other) and its ``note`` which condition flagged it, with dates.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, ClassVar

from pydantic import Field
from sqlalchemy import ColumnElement, Date, FromClause, Select, and_, case, cast, func, null, select

from models.sqltime import dates_apart
from models.tables import close_date_changes, reps
from rules.asof import CLOSE_DATE_HISTORY, open_deals_at, per_part
from rules.findings import Evaluation
from rules.model import Rule, SeverityTiers, Warehouse
from rules.owners import OwnerParams, OwnerTally, owner_evaluation, sample_columns
from rules.periods import PeriodKind, period_of
from rules.scoping import deal_condition, deal_side, rep_condition
from rules.verdicts import binomial_p, grade, plural, tiers

COUNTED = ("id", "source", "owner_id", "pipeline", "stage", "amount_reporting", "close_date", *CLOSE_DATE_HISTORY)


class Params(OwnerParams):
    min_pushes: int = Field(3, ge=1)  # pushes to a later date before a deal counts (healthy deals slip at most twice)
    past_period_end: bool = True  # also flag deals moved out of the current fiscal period
    period: PeriodKind = "quarter"  # the fiscal period whose end counts
    min_past_end: int = Field(3, ge=1)  # deals an owner must have moved out of the period for those to count
    past_end_excess: float = Field(0.2, ge=0, le=1)  # ... a share this far above the rest of the company's
    alpha: float = Field(0.001, gt=0, lt=0.5)  # ... and a binomial test below this level


class CloseDateSlipped:
    name: ClassVar[str] = "close_date_slipped"
    Params: ClassVar[type[Params]] = Params
    default_tiers: ClassVar[SeverityTiers] = SeverityTiers(warn=1, critical=5)

    def evaluate(self, rule: Rule, warehouse: Warehouse, now: datetime) -> Evaluation:
        params = Params(**rule.params)
        cdc = close_date_changes
        period = period_of(params.period, now, warehouse.company)

        # A deal's pushes come from its row (the sync counts them); its history is read, through the
        # (opportunity_id, changed_at) index, only for a deal changed in the period and now after its end
        # whose latest change (on the row) was not the move out, and for how far the date moved of the
        # deals shown. The history of closed deals is never read.
        def pushes_of(deal_id: ColumnElement) -> ColumnElement[bool]:
            return and_(cdc.c.opportunity_id == deal_id, cdc.c.changed_at <= now, cdc.c.new_date > cdc.c.old_date)

        def moved_out_of_period(deal_id: ColumnElement) -> ColumnElement[bool]:
            return and_(
                cdc.c.opportunity_id == deal_id,
                cdc.c.changed_at >= period.start_utc,
                cdc.c.changed_at <= now,
                cdc.c.old_date >= period.start,
                cdc.c.old_date <= period.end,
                cdc.c.new_date > period.end,
            )

        def pushed_by(deal_id: ColumnElement) -> ColumnElement:
            """Days between the first date a deal was pushed from and the latest it was pushed to."""
            first = select(func.min(cdc.c.old_date)).where(pushes_of(deal_id)).scalar_subquery()
            return dates_apart(first, select(func.max(cdc.c.new_date)).where(pushes_of(deal_id)).scalar_subquery())

        def counted_of(
            d: FromClause, owners: list[str] | None = None, outliers: frozenset[str] = frozenset()
        ) -> Select:
            if params.past_period_end:
                # The in-period date the deal was last moved out from (null: never moved out). When the latest
                # change (kept on the row) made by ``now`` moved it from a date in the period, that is the date;
                # else the history says, for the deals changed during the period and now after its end only.
                out_from = (
                    select(cdc.c.old_date)
                    .where(moved_out_of_period(d.c.id))
                    .order_by(cdc.c.changed_at.desc(), cdc.c.id.desc())
                    .limit(1)
                    .scalar_subquery()
                )
                changed, previous = d.c.close_date_changed_at, d.c.close_date_previous
                may_be_out = and_(d.c.close_date > period.end, changed >= period.start_utc)  # null: never changed
                latest_moved_out = and_(changed <= now, previous >= period.start, previous <= period.end)
                left_period = case((and_(may_be_out, latest_moved_out), previous), (may_be_out, out_from), else_=None)
            else:
                left_period = cast(null(), Date)  # typed: PostgreSQL will subtract it from a date
            query = select(d, d.c.close_date_pushes.label("pushes"), left_period.label("left_from"))
            if owners is None:  # every owner: the owner's side of the scope is applied to the grouped owners
                slipped = d.c.close_date_pushes >= params.min_pushes
                return query.add_columns(case((slipped, pushed_by(d.c.id)), else_=None).label("pushed_by")).where(
                    deal_side(rule.scope, d)
                )
            # The owners named, for their samples: the deals that can be flagged only.
            can_flag = d.c.close_date_pushes >= params.min_pushes
            if outliers:
                can_flag = can_flag | d.c.owner_id.in_(sorted(outliers))
            return query.join_from(d, reps, reps.c.id == d.c.owner_id).where(
                deal_condition(rule.scope, d, reps), d.c.owner_id.in_(owners), can_flag
            )

        # Owners judged from the columns the open-deal index holds, grouped in each part of the open deals on
        # its own (rules/asof.py ``per_part``), then once more across both; the owners named read again.
        def owner_figures(part: FromClause) -> Select:
            # The per-deal look-ups (moved out of the period, how far a slipped deal moved) run once per deal
            # in a subquery the planner may not merge into the grouping (OFFSET 0): merged, each use of a
            # column repeats its look-up (a dozen per deal); a MATERIALIZED CTE of all open deals instead
            # was sorted for the grouping (0.15 s -> 0.06 s at 100k deals on SQLite).
            judged = counted_of(part).offset(0).subquery("judged")
            c = judged.c
            slipped, out = c.pushes >= params.min_pushes, c.left_from.is_not(None)
            return (
                select(c.owner_id, func.count().label("deals"), func.sum(case((out, 1), else_=0)).label("out"),
                       *_tally(slipped, c.amount_reporting, c.pushed_by, "slipped"),
                       *_tally(slipped | out, c.amount_reporting,
                               case((slipped, c.pushed_by), (out, dates_apart(c.left_from, c.close_date)),
                                    else_=None), "either"))
                .group_by(c.owner_id)
            )  # fmt: skip

        f = per_part(now, COUNTED, owner_figures).c
        figures = (
            select(f.owner_id, func.sum(f.deals), func.sum(f.out),
                   *(agg(f[f"{reading}_{name}"]) for reading in ("slipped", "either")
                     for name, agg in (("deals", func.sum), ("amount", func.sum), ("worst", func.max))))
            .group_by(f.owner_id)
            .subquery("figures")
        )  # fmt: skip
        # Grouped per owner before the owners are joined (a look-up per deal cost more than the rest).
        per_owner = warehouse.conn.execute(
            select(figures.c[0], reps.c.name, reps.c.team, *list(figures.c)[1:])
            .join_from(figures, reps, reps.c.id == figures.c[0])
            .where(rep_condition(rule.scope, reps))
            .order_by(figures.c[0])
        ).all()
        outliers = _past_end_outliers(per_owner, params) if params.past_period_end else set()
        tallies = [  # columns: owner, name, team, open deals, moved out, then the two readings' figures
            OwnerTally(r[0], r[1], r[2], int(r[3]), *_figures(r[8:11] if r[0] in outliers else r[5:8]))
            for r in per_owner
        ]
        chosen = tiers(rule, self.default_tiers)
        named = [t for t in tallies if t.flagged >= params.min_deals and grade(t.flagged, chosen, "above")]
        full = (
            counted_of(open_deals_at(now, COUNTED), [t.owner_id for t in named],
                       frozenset(outliers))
            # Looked up once per deal: both databases inline a plain CTE and repeat a subquery for every later
            # use of its column.
            .cte("full").prefix_with("MATERIALIZED")
        )  # fmt: skip
        out_counts = full.c.left_from.is_not(None) & full.c.owner_id.in_(sorted(outliers))
        judged = select(full, out_counts.label("out_counts")).subquery("judged")
        j = judged.c
        first_date = select(func.min(cdc.c.old_date)).where(pushes_of(j.id)).scalar_subquery()
        flagged = (j.pushes >= params.min_pushes) | j.out_counts
        deals = select(
            *sample_columns(judged),
            case((j.pushes >= params.min_pushes, pushed_by(j.id)),
                 (j.out_counts, dates_apart(j.left_from, j.close_date))).label("days"),
            case((flagged, 1), else_=0).label("flagged"),
            j.pushes,
            case((j.pushes >= params.min_pushes, first_date), else_=None).label("first_date"),
            case((j.out_counts, j.left_from), else_=None).label("left_from"),
            j.close_date,
        ).subquery()  # fmt: skip

        def explain(t: OwnerTally) -> str:
            conditions = f"pushed out {params.min_pushes} times or more"
            if params.past_period_end:
                conditions += f" or moved out of {period.label()}"
            return (
                f"{t.name} has {plural(t.flagged, 'open deal')} (of {t.open_deals:,}) whose close date was "
                f"{conditions}, {t.flagged_amount:,.0f} in pipeline; the furthest moved {t.worst_days:.0f} days."
            )

        def describe(row: Mapping[str, Any]) -> str:
            said = []
            if row["first_date"] is not None:
                said.append(f"pushed {row['pushes']} times, {_day(row['first_date'])} -> {_day(row['close_date'])}")
            if row["left_from"] is not None:
                said.append(f"moved out of {period.label()}: {_day(row['left_from'])} -> {_day(row['close_date'])}")
            return "; ".join(said)

        return owner_evaluation(
            rule,
            warehouse,
            now,
            deals,
            params,
            self.default_tiers,
            explain=explain,
            baseline=params.min_pushes,
            describe=describe,
            tallies=named,
        )


def _tally(
    flagged: ColumnElement[bool], amount: ColumnElement, days: ColumnElement, reading: str
) -> list[ColumnElement]:
    """An owner's flagged deals, their amount and the worst ``days``, for one ``reading`` of "flagged"."""
    return [
        func.sum(case((flagged, 1), else_=0)).label(f"{reading}_deals"),
        func.coalesce(func.sum(case((flagged, func.coalesce(amount, 0)), else_=0)), 0).label(f"{reading}_amount"),
        func.max(case((flagged, func.coalesce(days, 0)), else_=None)).label(f"{reading}_worst"),
    ]


def _figures(row: tuple | list) -> tuple[int, float, float]:
    flagged, amount, worst = row
    return int(flagged or 0), float(amount or 0), float(worst or 0)


def _past_end_outliers(per_owner: list, params: Params) -> set[str]:
    """Owners who moved out of the period a share of their open deals well above the rest's."""
    rows = [(r[0], int(r[4]), int(r[3])) for r in per_owner]
    total_k, total_n = sum(k for _, k, _ in rows), sum(n for _, _, n in rows)
    found = set()
    for owner_id, k, n in rows:
        rest_n = total_n - n
        if k < params.min_past_end or rest_n == 0:
            continue
        p_rest = (total_k - k) / rest_n
        if k / n - p_rest >= params.past_end_excess and binomial_p(k, n, p_rest, "greater") < params.alpha:
            found.add(owner_id)
    return found


def _day(value: Any) -> str:
    """A date from either backend (SQLite hands back text from a CASE) as YYYY-MM-DD."""
    return str(value)[:10]
