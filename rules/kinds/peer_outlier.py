"""``peer_outlier``: each rep against the peers of the same team on one metric, both directions.

Metrics, per rep over the window (the current fiscal ``period`` to date, or the trailing
``window_days``), each with the count it rests on (the rep's sample)::

    won_amount        sum of amounts won (close date in the window)     sample: deals closed (won or lost)
    win_rate          won / closed                                      sample: deals closed
    activities        activities logged                                 sample: activities
    pipeline_created  sum of amounts of deals created                   sample: deals created
    avg_deal_size     won amount / deals won                            sample: deals won

``per_quota: true`` divides the amount metrics by the rep's quota for the window's days (so an
enterprise AE with twice the quota is not an outlier for selling twice as much).

Within each team, among reps with at least ``min_sample``, and only when at least
``min_team_size`` such reps remain (else a Note), the robust z-score (Iglewicz and Hoaglin)::

    z_i = (x_i - median(x)) / s,   s = max(1.4826 * MAD(x), min_spread * |median(x)|, binomial)

where MAD is the median absolute deviation and, for win_rate only, ``binomial`` =
sqrt(p (1 - p) / n_i) at the team's median rate p: with a handful of reps the MAD can be
near zero by chance, and a rep's own rate is only as exact as their deal count allows. The
tiers grade |z| (default warn 3.5, the usual outlier cut for the modified z-score, critical 5).
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from dataclasses import replace
from datetime import date, datetime, timedelta
from typing import ClassVar, Literal, NamedTuple

from pydantic import Field, model_validator
from sqlalchemy import Float, case, cast, func, select

from models.tables import activities, opportunities
from rules.asof import alive_at
from rules.attainment import RepInfo, closed_in, deal_scope, load_reps, quota_by_rep
from rules.findings import Evaluation, Finding, Note, SampleRecord, Severity, Subject
from rules.model import Rule, SeverityTiers, Warehouse
from rules.periods import Period, local_day, period_of
from rules.stage_label import stage_label
from rules.verdicts import KindParams, grade, make_finding, plural, tiers

Metric = Literal["won_amount", "win_rate", "activities", "pipeline_created", "avg_deal_size"]
AMOUNT_METRICS = ("won_amount", "pipeline_created", "avg_deal_size")
DEFAULT_TIERS = SeverityTiers(warn=3.5, critical=5.0)
MAD_SCALE = 1.4826  # makes the MAD estimate the standard deviation of a normal


class Params(KindParams):
    metric: Metric = "won_amount"
    period: Literal["month", "quarter", "year"] = "quarter"  # the window: this fiscal period to date...
    window_days: int | None = Field(None, ge=7)  # ...or the trailing days, when set
    per_quota: bool = False  # amount metrics divided by the rep's quota for the window
    min_team_size: int = Field(4, ge=3)  # comparable reps a team needs
    min_sample: int = Field(5, ge=1)  # a rep's count (see the metric) to be compared
    min_spread: float = Field(0.25, ge=0)  # floor of s, as a share of the median
    directions: Literal["both", "above", "below"] = "both"

    @model_validator(mode="after")
    def _quota_needs_amounts(self) -> Params:
        if self.per_quota and self.metric not in AMOUNT_METRICS:
            raise ValueError(f"per_quota applies to {', '.join(AMOUNT_METRICS)}, not {self.metric}")
        return self


UNITS = {
    "won_amount": "won",
    "win_rate": "win rate",
    "activities": "activities logged",
    "pipeline_created": "pipeline created",
    "avg_deal_size": "average won deal",
}
SAMPLE_WORDS = {  # singular, plural
    "won_amount": ("closed deal", "closed deals"),
    "win_rate": ("closed deal", "closed deals"),
    "activities": ("activity", "activities"),
    "pipeline_created": ("deal created", "deals created"),
    "avg_deal_size": ("deal won", "deals won"),
}


def window_of(params: Params, warehouse: Warehouse, now: datetime) -> tuple[date, date, datetime]:
    """(first local day, last local day, first instant) of the window ending at ``now``."""
    today = local_day(now, warehouse.company)
    if params.window_days:
        first = today - timedelta(days=params.window_days - 1)
        start = Period("month", first, today, warehouse.company.timezone).start_utc
        return first, today, start
    period = period_of(params.period, now, warehouse.company)
    return period.start, today, period.start_utc


def rep_metrics(
    warehouse: Warehouse, rule: Rule, params: Params, now: datetime, reps_in_scope: list[RepInfo]
) -> dict[str, tuple[float, int]]:
    """(metric value, sample) per rep, from one aggregate query."""
    first, last, start = window_of(params, warehouse, now)
    o = opportunities.c
    amount = cast(o.amount_reporting, Float)
    if params.metric == "activities":
        a = activities.c
        query = (
            select(a.rep_id, func.count())
            .where(a.occurred_at >= start, a.occurred_at <= now, alive_at(activities, now))
            .group_by(a.rep_id)
        )
        rows = {rep: (float(n), int(n)) for rep, n in warehouse.conn.execute(query)}
    elif params.metric == "pipeline_created":
        query = (
            select(o.owner_id, func.coalesce(func.sum(amount), 0.0), func.count())
            .where(o.created_at >= start, o.created_at <= now, alive_at(opportunities, now), deal_scope(rule.scope))
            .group_by(o.owner_id)
        )
        rows = {rep: (float(total), int(n)) for rep, total, n in warehouse.conn.execute(query)}
    else:
        d = closed_in(first, last, now, rule.scope).c
        won = d.is_won.is_(True)
        query = select(
            d.owner_id,
            func.coalesce(func.sum(case((won, d.amount), else_=0.0)), 0.0),
            func.count(case((won, 1))),
            func.count(),
        ).group_by(d.owner_id)
        rows = {}
        for rep, won_total, won_n, closed_n in warehouse.conn.execute(query):
            if params.metric == "won_amount":
                rows[rep] = (float(won_total), int(closed_n))
            elif params.metric == "win_rate":
                rows[rep] = (won_n / closed_n, int(closed_n))
            elif won_n:
                rows[rep] = (float(won_total) / won_n, int(won_n))
    if params.per_quota:
        window = Period("month", first, last, warehouse.company.timezone)
        quota = quota_by_rep(warehouse, window)
        rows = {rep: (value / quota[rep], n) for rep, (value, n) in rows.items() if quota.get(rep)}
    wanted = {r.id for r in reps_in_scope}
    return {rep: value for rep, value in rows.items() if rep in wanted}


def robust_z(values: list[float], floor: float) -> tuple[float, float, float]:
    """(median, scaled MAD, s) of a team's values; s is the scale the z-scores divide by."""
    median = statistics.median(values)
    mad = MAD_SCALE * statistics.median(abs(v - median) for v in values)
    return median, mad, max(mad, floor * abs(median))


class _Stats(NamedTuple):
    value: float
    sample: int
    z: float
    median: float
    mad: float
    peers: int


class PeerOutlier:
    name: ClassVar[str] = "peer_outlier"
    Params: ClassVar[type[Params]] = Params
    default_tiers: ClassVar[SeverityTiers] = DEFAULT_TIERS

    def evaluate(self, rule: Rule, warehouse: Warehouse, now: datetime) -> Evaluation:
        params = Params(**rule.params)
        levels = tiers(rule, DEFAULT_TIERS)
        reps_in_scope = load_reps(warehouse, rule.scope)
        metrics = rep_metrics(warehouse, rule, params, now, reps_in_scope)
        by_team: dict[str, list[RepInfo]] = defaultdict(list)
        for rep in reps_in_scope:
            if rep.team_id is not None:
                by_team[rep.team_id].append(rep)
        findings: list[Finding] = []
        notes: list[Note] = []
        for team_id, members in sorted(by_team.items()):
            peers = [(r, metrics[r.id]) for r in members if r.id in metrics and metrics[r.id][1] >= params.min_sample]
            team_name = members[0].team or team_id
            if len(peers) < params.min_team_size:
                if len(members) >= params.min_team_size:
                    notes.append(
                        Note(
                            rule.id,
                            Subject("team", team_id, team_name, team_name),
                            f"only {len(peers)} of {len(members)} reps have {params.min_sample}+ "
                            f"{SAMPLE_WORDS[params.metric][1]} in the window; {params.min_team_size} needed to compare",
                        )
                    )
                continue
            values = [value for _, (value, _) in peers]
            median, mad, scale = robust_z(values, params.min_spread)
            for rep, (value, n) in peers:
                s = scale
                if params.metric == "win_rate":
                    s = max(s, math.sqrt(median * (1 - median) / n))
                if s <= 0:
                    continue
                z = (value - median) / s
                if (params.directions == "above" and z < 0) or (params.directions == "below" and z > 0):
                    continue
                severity = grade(abs(z), levels, "above")
                if severity is None:
                    continue
                stats = _Stats(value, n, z, median, mad, len(peers))
                findings.append(self._finding(rule, params, warehouse, now, rep, team_name, severity, stats))
        return Evaluation(rule.id, rule.kind, now, tuple(findings), tuple(notes))

    def _finding(
        self,
        rule: Rule,
        params: Params,
        warehouse: Warehouse,
        now: datetime,
        rep: RepInfo,
        team: str,
        severity: Severity,
        stats: _Stats,
    ) -> Finding:
        value, n, z, median, mad, peers = stats
        currency = warehouse.company.reporting_currency
        first, last, _ = window_of(params, warehouse, now)

        def show(x: float) -> str:
            if params.per_quota:
                return f"{100 * x:.0f} % of the quota for those days"
            if params.metric == "win_rate":
                return f"{100 * x:.0f} %"
            if params.metric == "activities":
                return f"{x:,.0f}"
            return f"{x:,.0f} {currency}"

        direction = "above" if z > 0 else "below"
        explanation = (
            f"{rep.name}'s {UNITS[params.metric]} from {first.isoformat()} to {last.isoformat()}, {show(value)} "
            f"({plural(n, *SAMPLE_WORDS[params.metric])}), is {abs(z):.1f} robust z-scores {direction} the median "
            f"of {show(median)} among {peers} reps of {team}."
        )
        finding = make_finding(
            rule,
            now,
            subject=Subject("rep", rep.id, rep.name, rep.team),
            severity=severity,
            value=round(z, 3),
            baseline=0.0,
            sample_size=n,
            unit="zscore",
            explanation=explanation,
            samples=self._samples(params, warehouse, rep, first, last) if params.metric in AMOUNT_METRICS else (),
            details={
                "metric": params.metric,
                "per_quota": params.per_quota,
                "rep_value": value,
                "team_median": median,
                "team_mad_scaled": mad,
                "peers": peers,
                "window_start": first.isoformat(),
                "window_end": last.isoformat(),
                "direction": direction,
            },
        )
        return replace(finding, labels={**finding.labels, "direction": direction})

    def _samples(
        self, params: Params, warehouse: Warehouse, rep: RepInfo, first: date, last: date
    ) -> tuple[SampleRecord, ...]:
        """The rep's biggest deals behind the metric (won in the window, or created in it)."""
        if not params.max_samples:
            return ()
        o = opportunities.c
        if params.metric == "pipeline_created":
            start = Period("month", first, last, warehouse.company.timezone).start_utc
            where = [o.created_at >= start]
        else:
            where = [o.is_won.is_(True), o.close_date >= first, o.close_date <= last]
        rows = warehouse.conn.execute(
            select(o.id, o.name, o.amount_reporting, stage_label(o.source, o.pipeline, o.stage).label("stage"))
            .add_columns(o.crm_url)
            .where(o.owner_id == rep.id, o.deleted_at.is_(None), *where)
            .order_by(o.amount_reporting.desc(), o.id)
            .limit(params.max_samples)
        )
        return tuple(
            SampleRecord(
                id=r.id,
                name=r.name or r.id,
                amount=None if r.amount_reporting is None else float(r.amount_reporting),
                owner=rep.name,
                stage=r.stage,
                url=r.crm_url,
            )
            for r in rows
        )
