"""``pipeline_coverage``: open pipeline against the quota still to win, per rep and team.

Measurements (:mod:`rules.attainment`, reporting currency, as of T, current fiscal period)::

    remaining = max(0, target - won)            target = the period's (ramp-adjusted) quota
    coverage  = open amount closing in the period / remaining
    weighted  = sum(open amount * historical stage win rate) / remaining

Graded on ``coverage`` (raw; ``weighted: true`` grades the weighted one) against the tiers,
direction below (default warn 3x, critical 2x: the rule of thumb that a rep needs three
times the quota left in pipeline, at a one-in-three win rate). Coverage alone is weak
news, since in a healthy team a third of the reps sit below 3x on any given day, so it
fires only with corroboration: the subject is also behind pace (pace below ``behind_pace``,
once ``min_elapsed`` of the period has passed) or projected well short (the upper end of
the 80 % projection interval below ``projected_short`` of the target, when it rests on
``min_projection_deals`` open deals: it counts existing deals only). A subject whose
quota is already met (remaining 0) or who has no quota is never judged.
"""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar

from pydantic import Field

from rules.attainment import Measure, MeasureParams, measure_current
from rules.findings import Evaluation, Finding, Subject
from rules.model import Rule, SeverityTiers, Warehouse
from rules.verdicts import grade, make_finding, plural, tiers

DEFAULT_TIERS = SeverityTiers(warn=3.0, critical=2.0)


class Params(MeasureParams):
    weighted: bool = False  # grade the win-rate-weighted coverage instead of the raw one
    behind_pace: float = Field(0.6, gt=0)  # corroboration: pace below this (once min_elapsed has passed)...
    projected_short: float = Field(0.8, gt=0)  # ...or the projection's upper end below this share of target
    min_remaining: float = Field(0, ge=0)  # remaining quota below this is not judged (reporting currency)


class PipelineCoverage:
    name: ClassVar[str] = "pipeline_coverage"
    Params: ClassVar[type[Params]] = Params
    default_tiers: ClassVar[SeverityTiers] = DEFAULT_TIERS

    def evaluate(self, rule: Rule, warehouse: Warehouse, now: datetime) -> Evaluation:
        params = Params(**rule.params)
        levels = tiers(rule, DEFAULT_TIERS)
        period, measured = measure_current(rule, warehouse, now, params)
        subjects = [(Subject("rep", rep.id, rep.name, rep.team), m) for rep, m in measured.reps.values()]
        if params.teams:
            subjects += [(Subject("team", tid, name, name), m) for tid, (name, m) in measured.teams.items()]
        currency = warehouse.company.reporting_currency
        findings: list[Finding] = []
        for subject, m in subjects:
            found = self._judge(rule, params, levels, now, subject, m, measured.elapsed, currency, period.label())
            if found:
                findings.append(found)
        return Evaluation(rule.id, rule.kind, now, tuple(findings))

    def _judge(
        self,
        rule: Rule,
        params: Params,
        levels: SeverityTiers,
        now: datetime,
        subject: Subject,
        m: Measure,
        elapsed: float,
        currency: str,
        label: str,
    ) -> Finding | None:
        remaining = m.remaining
        if not m.quota or remaining <= max(0.0, params.min_remaining):
            return None
        raw = m.pipeline.amount / remaining
        weighted = m.pipeline.weighted / remaining
        value = weighted if params.weighted else raw
        severity = grade(value, levels, "below")
        if severity is None:
            return None
        pace = m.pace
        behind = elapsed >= params.min_elapsed and pace is not None and pace < params.behind_pace
        _low, high = m.projected_interval()
        short = (
            m.target > 0
            and m.pipeline.count >= params.min_projection_deals
            and high / m.target < params.projected_short
        )
        if not (behind or short):
            return None
        because = []
        if behind:
            because.append(f"at {100 * (pace or 0):.0f} % of quota pace")
        if short:
            because.append(f"projected at most {100 * high / m.target:.0f} % of quota")
        explanation = (
            f"{subject.name} has {m.pipeline.amount:,.0f} {currency} of open pipeline closing in {label} "
            f"({plural(m.pipeline.count, 'deal')}, {m.pipeline.weighted:,.0f} {currency} weighted by stage win rates) "
            f"for {remaining:,.0f} {currency} of quota still to win: {raw:.1f}x coverage "
            f"({weighted:.1f}x weighted), and is {' and '.join(because)}."
        )
        finding = make_finding(
            rule,
            now,
            subject=subject,
            severity=severity,
            value=round(value, 3),
            baseline=float(levels.warn if levels.warn is not None else levels.critical or 0.0),
            sample_size=m.pipeline.count,
            unit="ratio",
            explanation=explanation,
            details={
                "period": label,
                "coverage": raw,
                "weighted_coverage": weighted,
                "open_amount": round(m.pipeline.amount, 2),
                "weighted_amount": round(m.pipeline.weighted, 2),
                "remaining": round(remaining, 2),
                "quota": m.quota,
                "won": round(m.won, 2),
                "pace": pace,
                "projected_high": high / m.target if m.target else None,
                "corroborated_by": [name for name, hit in (("behind_pace", behind), ("projected_short", short)) if hit],
                "currency": currency,
            },
        )
        return finding
