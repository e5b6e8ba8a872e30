"""Each rep's and team's standing against quota in a fiscal period, as of an instant.

Why one module: ``quota_attainment``, ``pipeline_coverage`` and the digest's ``standing`` read
the same numbers (quota, won, open pipeline, stage win rates), and a rep must not be on pace in
one message and behind in the next. Four small aggregate queries run in the database; Python
sees one row per rep (won, quota lines) or per rep and stage (open pipeline), never raw deals.

As of an instant T (``now``), from what the warehouse keeps:

- won in the period: deals won now whose close date (the CRM's business day) lies in the
  period and which closed at or before T; a deal re-opened since is not counted (its won
  state was overwritten);
- a deal's close instant: when it entered its closed stage (``stage_entered_at``), else
  ``closed_at`` (Salesforce gives none, HubSpot the day at midnight);
- open at T, a deal's stage and close date at T: :func:`rules.asof.open_deals_at`;
- amounts are today's ``amount_reporting`` (past amounts and past owners are not kept).

Open pipeline of a period: deals open at T whose close date at T lies in the period.
Historical win rate p(s) of a stage: :mod:`rules.win_rates` (the stage moves of the
``win_rate_days`` before T read as an absorbing Markov chain). Projection of a rep's won
amount at period end (deals closing in the period, each won independently with p of its
stage at T)::

    projected = won + sum(a_i * p_i)            sd = sqrt(sum(a_i^2 * p_i * (1 - p_i)))
    80 % interval = [max(won, projected - z * sd), min(won + sum(a_i), projected + z * sd)],
    z = scipy.stats.norm.ppf(0.9)

Pace: expected by now = quota * elapsed share of the period. A rep hired within ``ramp_days``
(``reps.hired_on``; null = not ramping) is expected to sell in proportion to their ramp,
w(d) = min(1, days since hire / ramp_days), over the days since hire (a mid-period hire's
quota is taken to cover the days from hire, as the quota file pro-rates it)::

    expected = quota * sum(w(d), d elapsed since hire) / days of the period since hire

Quotas: the quota lines overlapping the period, each pro-rated by its overlap in days; where
a rep has lines from the quota file, those win over CRM quota lines for the whole period.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Literal

from pydantic import Field
from scipy.stats import norm
from sqlalchemy import Float, FromClause, Select, Subquery, and_, cast, func, or_, select, true, union_all
from sqlalchemy.sql.elements import ColumnElement

from models.tables import opportunities, quotas, reps
from rules.asof import alive_at, close_date_at, per_part
from rules.model import Rule, Scope, Warehouse
from rules.periods import Period, local_day, period_of
from rules.scoping import pipeline_condition, rep_condition, source_condition
from rules.verdicts import KindParams
from rules.win_rates import WinRates, win_rates

Z80 = float(norm.ppf(0.9))  # two-sided 80 % interval of a normal


@dataclass(frozen=True)
class RepInfo:
    id: str
    name: str
    email: str | None
    team_id: str | None
    team: str | None
    source: str
    hired_on: date | None


@dataclass
class OpenPipeline:
    """Open deals closing in the period, as of T, with their stage-weighted expectation."""

    count: int = 0
    amount: float = 0.0
    weighted: float = 0.0  # sum(a * p)
    variance: float = 0.0  # sum(a^2 * p * (1 - p))

    def add(self, other: OpenPipeline) -> None:
        self.count += other.count
        self.amount += other.amount
        self.weighted += other.weighted
        self.variance += other.variance


@dataclass
class Measure:
    """One rep or team in one period as of T. Money in the reporting currency."""

    quota: float | None  # None: no quota line overlaps the period
    expected: float  # quota expected by T (pace target, ramp-adjusted)
    target: float  # quota expected by the period's end (ramp-adjusted)
    won: float
    deals_won: int
    pipeline: OpenPipeline = field(default_factory=OpenPipeline)

    @property
    def attainment(self) -> float | None:
        return self.won / self.quota if self.quota else None

    @property
    def pace(self) -> float | None:
        """Won / expected by now (1.0 = on pace)."""
        return self.won / self.expected if self.expected > 0 else None

    @property
    def projected(self) -> float:
        return self.won + self.pipeline.weighted

    def projected_interval(self) -> tuple[float, float]:
        sd = math.sqrt(self.pipeline.variance)
        low = max(self.won, self.projected - Z80 * sd)
        high = min(self.won + self.pipeline.amount, self.projected + Z80 * sd)
        return low, max(low, high)

    @property
    def remaining(self) -> float:
        return max(0.0, self.target - self.won)

    def share_of_target(self, amount: float) -> float | None:
        return amount / self.target if self.target > 0 else None


@dataclass(frozen=True)
class Standings:
    """Every rep in scope (with a measure) and every team (sum of its reps that have a quota)."""

    period: Period
    as_of: datetime
    elapsed: float
    reps: dict[str, tuple[RepInfo, Measure]]
    teams: dict[str, tuple[str, Measure]]  # team id -> (team name, measure)


# -- reps in scope -------------------------------------------------------------------------------
def load_reps(warehouse: Warehouse, scope: Scope) -> list[RepInfo]:
    """Active, not deleted reps in scope."""
    r = reps.c
    rows = warehouse.conn.execute(
        select(r.id, r.name, r.email, r.team_id, r.team, r.source, r.hired_on).where(
            r.deleted_at.is_(None), r.is_active.is_(True), rep_condition(scope, reps)
        )
    )
    return [RepInfo(*row) for row in rows]


def deal_scope(scope: Scope) -> ColumnElement[bool]:
    """The scope's pipelines and sources on ``opportunities`` (owners are narrowed through the reps)."""
    o = opportunities.c
    return and_(pipeline_condition(scope, o.pipeline), source_condition(scope, o.source))


# -- the aggregates -------------------------------------------------------------------------------
def quota_by_rep(warehouse: Warehouse, period: Period) -> dict[str, float]:
    """Quota per rep for the period: overlapping lines pro-rated by days; file lines win."""
    q = quotas.c
    rows = warehouse.conn.execute(
        select(q.rep_id, q.source, q.period_start, q.period_end, q.amount_reporting).where(
            q.period_start <= period.end, q.period_end >= period.start
        )
    ).all()
    has_file = {row.rep_id for row in rows if row.source == "file"}
    total: dict[str, float] = defaultdict(float)
    for row in rows:
        if row.rep_id in has_file and row.source != "file":
            continue
        days = (row.period_end - row.period_start).days + 1
        total[row.rep_id] += float(row.amount_reporting) * period.overlap_days(row.period_start, row.period_end) / days
    return dict(total)


def closed_moment() -> ColumnElement[datetime]:
    """When a closed deal closed: entering its closed stage (stage history), else ``closed_at``.

    Salesforce gives no close time (``closed_at`` is null) and HubSpot's is the close day at
    midnight; the stage history has the instant.
    """
    o = opportunities.c
    return func.coalesce(o.stage_entered_at, o.closed_at)


def closed_in(first: date, last: date, now: datetime, scope: Scope, *, won: bool = False) -> Subquery:
    """Deals in scope closed by ``now`` (not deleted then) whose close date at ``now`` lies in [first, last];
    with ``won``, the won ones only, read from the won-deal index (a small share of the closed deals).

    Columns: ``owner_id``, ``is_won``, ``amount`` (reporting currency, float). The close date at
    ``now`` (:func:`rules.asof.close_date_at`), not today's: a won deal whose close date moved
    since counts where it stood. Two parts, each on its own index: deals not modified since
    ``now`` by the (is_closed, close_date) range; deals modified since (few when ``now`` is
    recent) through their history.
    """
    o = opportunities.c
    moment = closed_moment()
    stamp = func.coalesce(o.updated_at, o.synced_at)
    shared = and_(
        o.is_closed == true(),  # "= 1" on SQLite, as the closed-deal index's condition reads
        o.is_won == true() if won else true(),  # likewise the won-deal index's
        alive_at(opportunities, now),
        or_(moment.is_(None), moment <= now),
        deal_scope(scope),
    )
    columns = (o.owner_id.label("owner_id"), o.is_won.label("is_won"), cast(o.amount_reporting, Float).label("amount"))
    unchanged = select(*columns).where(shared, o.close_date >= first, o.close_date <= last, stamp <= now)
    at = close_date_at(opportunities, now)
    since = or_(o.updated_at > now, and_(o.updated_at.is_(None), o.synced_at > now))
    changed = select(*columns).where(shared, since, at >= first, at <= last)
    return union_all(unchanged, changed).subquery("closed_in")


def won_by_rep(warehouse: Warehouse, period: Period, now: datetime, scope: Scope) -> dict[str, tuple[float, int]]:
    """Won amount and deal count per owner: close date (the CRM's business day) in the period, closed by ``now``.

    The close date, not the UTC instant, places a deal in a period: a deal won at 23:30 local
    time on the quarter's last day carries that day as its close date in the CRM.
    """
    today = local_day(now, warehouse.company)
    if today < period.start:
        return {}
    d = closed_in(period.start, min(period.end, today), now, scope, won=True).c
    query = select(d.owner_id, func.sum(d.amount), func.count()).group_by(d.owner_id)

    def won() -> dict[str, tuple[float, int]]:
        return {owner: (float(amount or 0), int(n)) for owner, amount, n in warehouse.conn.execute(query)}

    # quota_attainment, pipeline_coverage and peer rules of one check measure the same period: read once
    return dict(warehouse.shared(("won", period, now, scope), won))


@dataclass(frozen=True)
class DealSizes:
    """Won deal amounts over the trailing window, company-wide: the yardstick of chance."""

    count: int
    mean: float
    mean_square: float

    def shortfall_p(self, won: float, expected: float) -> float | None:
        """One-sided p-value of winning ``won`` or less when ``expected`` was due.

        Wins arrive as a compound Poisson process: N ~ Poisson(expected / mean) deals with the
        company's amounts, so Var(won) = (expected / mean) * E[a^2]; normal approximation.
        """
        if self.count == 0 or self.mean <= 0 or expected <= 0:
            return None
        sd = math.sqrt(expected / self.mean * self.mean_square)
        return float(norm.cdf((won - expected) / sd))


def deal_sizes(warehouse: Warehouse, now: datetime, days: int) -> DealSizes:
    today = local_day(now, warehouse.company)
    d = closed_in(today - timedelta(days=days - 1), today, now, Scope(), won=True).c
    n, total, squares = warehouse.conn.execute(
        select(func.count(d.amount), func.sum(d.amount), func.sum(d.amount * d.amount))
    ).one()
    if not n:
        return DealSizes(0, 0.0, 0.0)
    return DealSizes(int(n), float(total) / n, float(squares) / n)


def open_pipeline_by_rep(
    warehouse: Warehouse, period: Period, now: datetime, scope: Scope, rates: WinRates
) -> dict[str, OpenPipeline]:
    """Deals open at ``now`` (:func:`rules.asof.open_deals_at`) whose close date then lies in the period."""
    rows = warehouse.shared(
        ("open_pipeline", period, now, scope), lambda: _open_pipeline_rows(warehouse, period, now, scope)
    )
    out: dict[str, OpenPipeline] = defaultdict(OpenPipeline)
    for owner, source, pipeline, stage, n, total, squares in rows:
        p = rates.rate(source, pipeline, stage)
        out[owner].add(OpenPipeline(int(n), float(total), float(total) * p, float(squares) * p * (1 - p)))
    return dict(out)


def _open_pipeline_rows(warehouse: Warehouse, period: Period, now: datetime, scope: Scope) -> list[tuple]:
    """(owner, source, pipeline, stage, deals, amount, amount squared) of the open deals closing in the period."""

    def closing(part: FromClause) -> Select:
        d = part.c
        amount = cast(d.amount_reporting, Float)
        keys = (d.owner_id, d.source, d.pipeline, d.stage)  # the open-deal index's order: the grouping streams
        return (
            select(*keys, func.count().label("deals"), func.coalesce(func.sum(amount), 0.0).label("amount"),
                   func.coalesce(func.sum(amount * amount), 0.0).label("squares"))
            .where(d.close_date >= period.start, d.close_date <= period.end, pipeline_condition(scope, d.pipeline),
                   source_condition(scope, d.source))
            .group_by(*keys)
        )  # fmt: skip

    read = ("id", "source", "owner_id", "pipeline", "stage", "amount_reporting", "close_date")
    g = per_part(now, read, closing).c
    rows = warehouse.conn.execute(
        select(
            g.owner_id, g.source, g.pipeline, g.stage, func.sum(g.deals), func.sum(g.amount), func.sum(g.squares)
        ).group_by(g.owner_id, g.source, g.pipeline, g.stage)
    )
    return [tuple(row) for row in rows]


# -- putting it together --------------------------------------------------------------------------
def ramp_share(period: Period, hired_on: date | None, today: date, ramp_days: int) -> tuple[float, float] | None:
    """(expected share by today, expected share by period end) of a ramping rep's quota; None if not ramping."""
    if hired_on is None or ramp_days <= 0 or (today - hired_on).days >= ramp_days:
        return None
    first = max(period.start, hired_on)
    days = (period.end - first).days + 1
    if days <= 0:
        return 0.0, 0.0

    def weight(day: date) -> float:
        return min(1.0, max(0.0, (day - hired_on).days / ramp_days))

    span = [first + timedelta(days=k) for k in range(days)]
    by_today = sum(weight(d) for d in span if d <= today)
    return by_today / days, sum(weight(d) for d in span) / days


class MeasureParams(KindParams):
    """The params of every kind that reads this measurement (their defaults are the digest's)."""

    period: Literal["month", "quarter", "year"] = "quarter"
    min_elapsed: float = Field(0.15, ge=0, le=1)  # share of the period before pace is judged
    ramp_days: int = Field(90, ge=0)  # reps hired this recently get a ramped quota; 0: no ramp
    win_rate_days: int = Field(365, ge=30)  # stage win rates from the stage moves of this many days
    min_history: int = Field(20, ge=1)  # moves out of a stage before its own win rate is used
    teams: bool = True  # judge teams (the sum of their reps) too
    # The projection counts existing deals only: with fewer open deals closing in the period it
    # speaks of deals not created yet, not of the subject, and stays silent.
    min_projection_deals: int = Field(5, ge=1)


def measure_current(rule: Rule, warehouse: Warehouse, now: datetime, params: MeasureParams) -> tuple[Period, Standings]:
    """The rule's fiscal period at ``now`` and its measures: what quota_attainment and pipeline_coverage judge."""
    period = period_of(params.period, now, warehouse.company)
    return period, measure_period(warehouse, period, now, rule.scope, params)


def measure_period(
    warehouse: Warehouse, period: Period, now: datetime, scope: Scope, params: MeasureParams
) -> Standings:
    """Measures for every rep in scope and every team, in ``period`` as of ``now``."""
    found = load_reps(warehouse, scope)
    quota = quota_by_rep(warehouse, period)
    won = won_by_rep(warehouse, period, now, scope)
    rates = win_rates(warehouse, now, params.win_rate_days, params.min_history)
    pipeline = open_pipeline_by_rep(warehouse, period, now, scope, rates)
    elapsed = period.elapsed(now)
    today = min(local_day(now, warehouse.company), period.end)
    reps_out: dict[str, tuple[RepInfo, Measure]] = {}
    teams: dict[str, tuple[str, Measure]] = {}
    for rep in found:
        q = quota.get(rep.id)
        amount, count = won.get(rep.id, (0.0, 0))
        shares = ramp_share(period, rep.hired_on, today, params.ramp_days) if q else None
        by_now, by_end = shares if shares is not None else (elapsed, 1.0)
        m = Measure(q, (q or 0.0) * by_now, (q or 0.0) * by_end, amount, count, pipeline.get(rep.id, OpenPipeline()))
        reps_out[rep.id] = (rep, m)
        if q and rep.team_id is not None:
            _name, team = teams.setdefault(rep.team_id, (rep.team or rep.team_id, Measure(0.0, 0.0, 0.0, 0.0, 0)))
            team.quota = (team.quota or 0.0) + q
            team.expected += m.expected
            team.target += m.target
            team.won += m.won
            team.deals_won += m.deals_won
            team.pipeline.add(m.pipeline)
    return Standings(period, now, elapsed, reps_out, teams)
