"""``stalled_stage``: a funnel stage where open deals sit far longer than deals usually do.

Each open deal's time in its current stage at T is compared with a limit: fixed days per
stage (``limit_days``), or the ``percentile`` (default p90) of the time that deals which left
a stage during the trailing ``history_days`` spent in it. By default that history is the
whole pipeline's (``baseline: pipeline``): a stage that has been slowing for months has a
slow history of its own, so its own percentile would hide exactly what this rule is for;
``baseline: stage`` compares a stage with itself. Too little history (``min_history``
exits) and the stage is not evaluated, with a note saying so.

Formula, per stage s with n open deals of which k exceed the limit L:
share = k / n; under a healthy funnel about q = 1 - percentile/100 of them would
(fewer, since open deals have not finished their stay). The stage is reported when
n >= min_open, k >= min_stalled, the one-sided binomial test P(X >= k | n, q) < alpha
(scipy.stats.binomtest) and share reaches the tiers (default warn 0.3, critical 0.5).
The finding's value is the share, its baseline q, its sample size n; samples are the
deals longest in the stage.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, ClassVar, Literal

from pydantic import Field
from scipy.stats import binomtest
from sqlalchemy import ColumnElement, and_, case, func, literal, or_, select

from models.tables import opportunities, reps, stage_changes, stages
from rules.asof import alive_at, open_deals_at
from rules.findings import Evaluation, Note, SampleRecord, Subject
from rules.model import Rule, SeverityTiers, Warehouse
from rules.names import NameOf
from rules.scoping import deal_condition
from rules.sqltime import days_between, whole_days_between
from rules.stage_label import stage_label
from rules.verdicts import KindParams, grade, make_finding, plural, tiers


class Params(KindParams):
    percentile: float = Field(90, gt=50, lt=100)  # of historical time in stage: the limit
    baseline: Literal["pipeline", "stage"] = "pipeline"  # whose history sets the limit
    history_days: int = Field(365, ge=30)  # trailing window of stage exits
    min_history: int = Field(50, ge=10)  # exits needed in that window, else not evaluated
    # fixed limits in days by stage name, instead of the percentile
    limit_days: dict[Annotated[str, NameOf("stage")], float] = Field(default_factory=dict)
    min_open: int = Field(10, ge=1)  # open deals a stage needs to be judged
    min_stalled: int = Field(5, ge=1)  # stalled deals needed to report a stage
    alpha: float = Field(0.01, gt=0, lt=0.5)  # binomial test level


@dataclass(frozen=True)
class _Stage:
    source: str
    pipeline: str
    api_name: str
    id: str
    label: str


def _percentile(histogram: dict[int, int], percentile: float) -> float:
    """The percentile of whole-day buckets, as the bucket's upper edge (errs towards a higher limit)."""
    total = sum(histogram.values())
    rank = percentile / 100 * total
    seen = 0
    for bucket in sorted(histogram):
        seen += histogram[bucket]
        if seen >= rank:
            return bucket + 1.0
    return max(histogram) + 1.0


class StalledStage:
    name: ClassVar[str] = "stalled_stage"
    Params: ClassVar[type[Params]] = Params
    default_tiers: ClassVar[SeverityTiers] = SeverityTiers(warn=0.3, critical=0.5)

    def _history(self, rule: Rule, warehouse: Warehouse, now: datetime, params: Params) -> dict[tuple, dict[int, int]]:
        """Whole days spent in a stage by each exit in the window, counted per (source, pipeline[, stage])."""
        sc, o = stage_changes, opportunities
        prev = stage_changes.alias("prev")
        entered = (
            select(func.max(prev.c.changed_at))
            .where(prev.c.opportunity_id == sc.c.opportunity_id, prev.c.changed_at < sc.c.changed_at)
            .scalar_subquery()
        )
        bucket = whole_days_between(func.coalesce(entered, o.c.created_at), sc.c.changed_at).label("bucket")
        keys = [o.c.source, o.c.pipeline] + ([sc.c.from_stage] if params.baseline == "stage" else [])
        exits = (
            select(*keys, bucket)
            .join_from(sc, o, o.c.id == sc.c.opportunity_id)
            .join(reps, reps.c.id == o.c.owner_id)
            .where(
                sc.c.from_stage.is_not(None),
                sc.c.changed_at <= now,
                sc.c.changed_at > now - timedelta(days=params.history_days),
                alive_at(o, now),
                deal_condition(rule.scope, o, reps),
            )
            .subquery()
        )
        cols = list(exits.c)
        rows = warehouse.conn.execute(select(*cols, func.count()).group_by(*cols)).all()
        histograms: dict[tuple, dict[int, int]] = defaultdict(dict)
        for *key, bucket_days, count in rows:
            histograms[tuple(key)][max(0, int(bucket_days))] = int(count)
        return histograms

    def evaluate(self, rule: Rule, warehouse: Warehouse, now: datetime) -> Evaluation:
        params = Params(**rule.params)
        chosen = tiers(rule, self.default_tiers)
        known = {
            (r.source, r.pipeline, r.api_name): _Stage(r.source, r.pipeline, r.api_name, r.id, r.label)
            for r in warehouse.conn.execute(
                select(stages.c.source, stages.c.pipeline, stages.c.api_name, stages.c.id, stages.c.label).where(
                    stages.c.is_closed.is_(False)
                )
            )
        }
        fixed = {k.lower(): v for k, v in params.limit_days.items()}
        histograms = self._history(rule, warehouse, now, params)

        d = open_deals_at(now)
        counts = warehouse.conn.execute(
            select(d.c.source, d.c.pipeline, d.c.stage, func.count(), func.min(d.c.stage_entered_at))
            .join_from(d, reps, reps.c.id == d.c.owner_id)
            .where(deal_condition(rule.scope, d, reps))
            .group_by(d.c.source, d.c.pipeline, d.c.stage)
        ).all()
        limits: dict[tuple[str, str, str], tuple[float, str, int]] = {}  # stage -> (days, basis, history size)
        notes = []
        for source, pipeline, api_name, _n, _oldest in counts:
            stage = known.get((source, pipeline, api_name))
            label = stage.label if stage else api_name
            if api_name.lower() in fixed or label.lower() in fixed:
                limits[(source, pipeline, api_name)] = (
                    fixed.get(api_name.lower(), fixed.get(label.lower(), 0)),
                    "fixed",
                    0,
                )
                continue
            key = (source, pipeline) + ((api_name,) if params.baseline == "stage" else ())
            history = histograms.get(key, {})
            size = sum(history.values())
            if size < params.min_history:
                where = "this stage" if params.baseline == "stage" else "a stage of this pipeline"
                reason = (
                    f"not evaluated: {plural(size, 'deal')} left {where} in the last {params.history_days} days, "
                    f"{params.min_history} needed for a p{params.percentile:g} limit"
                )
                notes.append(Note(rule.id, self._subject(stage, source, pipeline, api_name), reason))
                continue
            limits[(source, pipeline, api_name)] = (_percentile(history, params.percentile), "history", size)
        if not limits:
            return Evaluation(rule.id, rule.kind, now, (), tuple(notes))

        cutoff = case(
            *[
                (and_(d.c.source == s, d.c.pipeline == p, d.c.stage == a), literal(now - timedelta(days=days)))
                for (s, p, a), (days, _, _) in limits.items()
            ],
            else_=None,
        )
        stalled_rows = warehouse.conn.execute(
            select(
                d.c.source,
                d.c.pipeline,
                d.c.stage,
                func.count(),
                func.sum(case((d.c.stage_entered_at < cutoff, 1), else_=0)),
            )
            .join_from(d, reps, reps.c.id == d.c.owner_id)
            .where(deal_condition(rule.scope, d, reps), _any_stage(d, limits))
            .group_by(d.c.source, d.c.pipeline, d.c.stage)
        ).all()
        findings = []
        q = 1 - params.percentile / 100
        for source, pipeline, api_name, n, k in sorted(stalled_rows):
            n, k = int(n), int(k or 0)
            days, basis, size = limits[(source, pipeline, api_name)]
            if n < params.min_open or k < params.min_stalled:
                continue
            share = k / n
            p_value = binomtest(k, n, q, alternative="greater").pvalue if basis == "history" else 0.0
            severity = grade(share, chosen, "above")
            if severity is None or p_value >= params.alpha:
                continue
            subject_key = (source, pipeline, api_name)
            subject = self._subject(known.get(subject_key), *subject_key)
            where = "a stage of this pipeline" if params.baseline == "pipeline" else "this stage"
            limit_text = (
                f"the fixed limit of {days:g} days"
                if basis == "fixed"
                else f"{days:.0f} days, the p{params.percentile:g} of time deals spent in {where} "
                f"over the last {params.history_days} days ({size:,} exits)"
            )
            findings.append(
                make_finding(
                    rule,
                    now,
                    subject=subject,
                    severity=severity,
                    value=round(share, 4),
                    baseline=round(q, 4),
                    sample_size=n,
                    unit="share",
                    explanation=(
                        f"{k:,} of {n:,} open deals in {subject.name} ({source}, pipeline {pipeline}) have been in the "
                        f"stage longer than {limit_text}; about {q:.0%} would be normal."
                    ),
                    samples=self._samples(warehouse, d, rule, subject_key, now, days, params.max_samples),
                    details={"stalled": k, "open": n, "limit_days": round(days, 1), "limit_basis": basis,
                             "history_exits": size, "p_value": p_value, "pipeline": pipeline, "source": source,
                             "stage": api_name},
                )
            )  # fmt: skip
        return Evaluation(rule.id, rule.kind, now, tuple(findings), tuple(notes))

    @staticmethod
    def _subject(stage: _Stage | None, source: str, pipeline: str, api_name: str) -> Subject:
        if stage is None:
            return Subject("stage", f"{source}:{pipeline}:{api_name}", api_name)
        return Subject("stage", stage.id, stage.label)

    @staticmethod
    def _samples(
        warehouse: Warehouse, d, rule: Rule, key: tuple[str, str, str], now: datetime, days: float, limit: int
    ) -> tuple[SampleRecord, ...]:
        if limit <= 0:
            return ()
        source, pipeline, api_name = key
        rows = warehouse.conn.execute(
            select(d.c.id, d.c.name, d.c.amount_reporting, d.c.crm_url,
                   stage_label(d.c.source, d.c.pipeline, d.c.stage).label("stage"), reps.c.name.label("owner"),
                   days_between(d.c.stage_entered_at, now).label("days"))
            .join_from(d, reps, reps.c.id == d.c.owner_id)
            .where(deal_condition(rule.scope, d, reps), d.c.source == source, d.c.pipeline == pipeline,
                   d.c.stage == api_name, d.c.stage_entered_at < now - timedelta(days=days))
            .order_by(d.c.stage_entered_at, d.c.id)
            .limit(limit)
        ).mappings()  # fmt: skip
        return tuple(
            SampleRecord(
                id=r["id"],
                name=r["name"] or r["id"],
                amount=None if r["amount_reporting"] is None else float(r["amount_reporting"]),
                owner=r["owner"],
                stage=r["stage"],
                days=round(float(r["days"]), 1),
                url=r["crm_url"],
            )
            for r in rows
        )


def _any_stage(d, limits: dict[tuple[str, str, str], tuple[float, str, int]]) -> ColumnElement[bool]:
    return or_(*(and_(d.c.source == s, d.c.pipeline == p, d.c.stage == a) for s, p, a in limits))
