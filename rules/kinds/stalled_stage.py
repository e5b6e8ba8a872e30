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
deals longest in the stage. With ``per_owner`` the same test runs on each owner's open deals
in each stage, and the finding is about the rep.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, ClassVar, Literal

from pydantic import Field
from sqlalchemy import FromClause, Select, and_, case, func, literal, select, true

from models.sqltime import days_between
from models.tables import opportunities, reps, stages
from rules.asof import per_part
from rules.findings import Evaluation, Note, SampleRecord, Subject
from rules.model import Rule, SeverityTiers, Warehouse
from rules.names import NameOf
from rules.scoping import deal_condition, deal_side, rep_condition
from rules.stage_history import stays
from rules.stage_label import stage_label
from rules.verdicts import KindParams, binomial_p, deal_sample, plural, share_finding, significant, tiers


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
    per_owner: bool = False  # judge each owner's deals in a stage on their own (subject: the rep)


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
        # The exits' time in stage per day is kept by the sync (rules/stage_history.py): a year of exits is read
        # as a few rows per day, not one per exit.
        histograms = stays(
            warehouse, now - timedelta(days=params.history_days), now, now, rule.scope,
            by_stage=params.baseline == "stage",
        )  # fmt: skip

        limits: dict[tuple[str, str, str], tuple[float, str, int]] = {}  # stage -> (days, basis, history size)
        unjudged: dict[tuple[str, str, str], str] = {}  # stage -> why it cannot be judged
        for (source, pipeline, api_name), stage in known.items():
            if api_name.lower() in fixed or stage.label.lower() in fixed:
                days = fixed.get(api_name.lower(), fixed.get(stage.label.lower(), 0))
                limits[(source, pipeline, api_name)] = (days, "fixed", 0)
                continue
            history = histograms.get((source, pipeline) + ((api_name,) if params.baseline == "stage" else ()), {})
            size = sum(history.values())
            if size >= params.min_history:
                limits[(source, pipeline, api_name)] = (_percentile(history, params.percentile), "history", size)
            else:
                where = "this stage" if params.baseline == "stage" else "a stage of this pipeline"
                unjudged[(source, pipeline, api_name)] = (
                    f"not evaluated: {plural(size, 'deal')} left {where} in the last {params.history_days} days, "
                    f"{params.min_history} needed for a p{params.percentile:g} limit"
                )

        # One pass over the open deals (the columns the open-deal index covers: no row look-ups), each stage's
        # cutoff instant picked by a CASE (null: no limit); grouped per owner and stage in the index's order,
        # then per stage (or per stage and owner) over the owners the scope keeps.
        def per_owner_and_stage(d: FromClause) -> Select:
            branches = [
                (and_(d.c.source == s, d.c.pipeline == p, d.c.stage == a), literal(now - timedelta(days=days)))
                for (s, p, a), (days, _, _) in limits.items()
            ]
            stalled = case((d.c.stage_entered_at < case(*branches, else_=None), 1), else_=0) if branches else literal(0)
            keys = (d.c.owner_id, d.c.source, d.c.pipeline, d.c.stage)
            return (
                select(*keys, func.count().label("open"), func.sum(stalled).label("stalled"))
                .where(deal_side(rule.scope, d))
                .group_by(*keys)
            )

        read = ("id", "source", "owner_id", "pipeline", "stage", "stage_entered_at")
        counted = per_part(now, read, per_owner_and_stage)
        g = counted.c
        groups = [g.source, g.pipeline, g.stage] + ([reps.c.id, reps.c.name, reps.c.team] if params.per_owner else [])
        stalled_rows = warehouse.conn.execute(
            select(*groups, func.sum(g.open), func.sum(g.stalled))
            .join_from(counted, reps, reps.c.id == g.owner_id)
            .where(rep_condition(rule.scope, reps))
            .group_by(*groups)
        ).all()
        notes = [
            Note(rule.id, self._subject(known.get(key), *key), unjudged[key])
            for key in sorted({tuple(r[:3]) for r in stalled_rows})
            if key in unjudged
        ]
        findings = []
        q = 1 - params.percentile / 100
        for row in sorted(stalled_rows, key=lambda r: tuple(str(v) for v in r[:-2])):
            source, pipeline, api_name = row[:3]
            owner = row[3:6] if params.per_owner else None
            if (source, pipeline, api_name) not in limits:
                continue
            n, k = int(row[-2]), int(row[-1] or 0)
            days, basis, size = limits[(source, pipeline, api_name)]
            if n < params.min_open or k < params.min_stalled:
                continue
            share = k / n
            p_value = binomial_p(k, n, q, "greater") if basis == "history" else 0.0
            severity = significant(share, chosen, "above", p_value, params.alpha)
            if severity is None:
                continue
            subject_key = (source, pipeline, api_name)
            stage_subject = self._subject(known.get(subject_key), *subject_key)
            subject = stage_subject if owner is None else Subject("rep", owner[0], owner[1], owner[2])
            whose = "" if owner is None else f"{owner[1]}'s "
            where = "a stage of this pipeline" if params.baseline == "pipeline" else "this stage"
            limit_text = (
                f"the fixed limit of {days:g} days"
                if basis == "fixed"
                else f"{days:.0f} days, the p{params.percentile:g} of time deals spent in {where} "
                f"over the last {params.history_days} days ({size:,} exits)"
            )
            findings.append(
                share_finding(
                    rule,
                    now,
                    subject=subject,
                    severity=severity,
                    share=share,
                    baseline=q,
                    sample_size=n,
                    explanation=(
                        f"{k:,} of {whose}{n:,} open deals in {stage_subject.name} ({source}, pipeline {pipeline}) "
                        f"have been in the stage longer than {limit_text}; about {q:.0%} would be normal."
                    ),
                    samples=self._samples(warehouse, rule, subject_key, now, days, params.max_samples,
                                          owner[0] if owner else None),
                    details={"stalled": k, "open": n, "limit_days": round(days, 1), "limit_basis": basis,
                             "history_exits": size, "p_value": p_value, "pipeline": pipeline, "source": source,
                             "stage": api_name, "stage_name": stage_subject.name},
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
        warehouse: Warehouse,
        rule: Rule,
        key: tuple[str, str, str],
        now: datetime,
        days: float,
        limit: int,
        owner: str | None,
    ) -> tuple[SampleRecord, ...]:
        if limit <= 0:
            return ()
        source, pipeline, api_name = key

        # The longest-stalled few of each part of the open deals (walking the (is_closed, stage, stage_entered_at)
        # index in order, a few steps), then of both; names, owners and links are read for those only.
        def longest(d: FromClause) -> Select:
            first = (
                select(d.c.id, d.c.stage_entered_at)
                .join_from(d, reps, reps.c.id == d.c.owner_id)
                .where(deal_condition(rule.scope, d, reps), d.c.source == source, d.c.pipeline == pipeline,
                       d.c.stage == api_name, d.c.stage_entered_at < now - timedelta(days=days),
                       d.c.owner_id == owner if owner else true())
                .order_by(d.c.stage_entered_at, d.c.id)
                .limit(limit)
                .subquery()
            )  # fmt: skip
            return select(first.c.id, first.c.stage_entered_at)

        parts = per_part(now, ("id", "source", "owner_id", "pipeline", "stage", "stage_entered_at"), longest)
        worst = select(parts).order_by(parts.c.stage_entered_at, parts.c.id).limit(limit).subquery("worst")
        o = opportunities
        rows = warehouse.conn.execute(
            select(o.c.id, o.c.name, o.c.amount_reporting, o.c.crm_url,
                   stage_label(o.c.source, o.c.pipeline, literal(api_name)).label("stage"),
                   reps.c.name.label("owner"), days_between(worst.c.stage_entered_at, now).label("days"))
            .join_from(worst, o, o.c.id == worst.c.id)
            .join(reps, reps.c.id == o.c.owner_id)
            .order_by(worst.c.stage_entered_at, worst.c.id)
        ).mappings()  # fmt: skip
        return tuple(deal_sample(r) for r in rows)
