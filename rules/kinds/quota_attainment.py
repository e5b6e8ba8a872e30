"""``quota_attainment``: each rep and each team against quota pace in the current fiscal period.

Measurements (:mod:`rules.attainment`, all in the reporting currency, as of T)::

    pace      = won / expected,  expected = quota * elapsed share (ramp-adjusted for new hires)
    projected = won + sum(open amount * historical win rate of its stage at T), 80 % interval
    run-rate  = (quota - won) / days left in the period

A team is the sum of its reps that have a quota. The value graded against the tiers (default
warn 0.6, critical 0.35, direction below) depends on how far the period has gone:

- from ``min_elapsed`` on: pace. A rep at 50 % of pace half-way is news; the sandbox keeps
  healthy reps at 75-130 % of pace, so 0.6 leaves room for an ordinary slow month;
- before ``min_elapsed`` (a few days of won deals say little): the just-closed period's
  attainment (a rep who ended last quarter far below quota is news in the first weeks of
  the next; judged only when the shortfall is beyond chance, see below), and the
  projection, which fires only when its whole 80 % interval lies below a tier (the upper
  end is graded) and rests on at least ``min_projection_deals`` open deals (default 5).

Chance test (``previous_alpha``, default 0.01; ``pace_alpha`` for pace, off by default):
at quota rate a rep wins N ~ Poisson(target / mean) deals of the company's won deal sizes
(last ``win_rate_days``), so won has variance (target / mean) * E[a^2]; the shortfall counts
when norm.cdf((won - target) / sd) < alpha. A quota worth two deals can end at 0 % by bad luck.

Reps at ``ahead_at`` times pace or more (default 2.0) are reported too (severity warn, label
``direction: ahead``): the ops lead wants to learn from them. A rep without a quota (or a
zero quota) for the period is a Note ("not evaluated"), never behind.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import ClassVar

from pydantic import Field
from sqlalchemy import select

from models.tables import opportunities
from rules.asof import open_deals_at
from rules.attainment import DealSizes, Measure, MeasureParams, RepInfo, deal_sizes, measure_current, measure_period
from rules.findings import Evaluation, Finding, Note, SampleRecord, Severity, Subject
from rules.model import Rule, SeverityTiers, Warehouse
from rules.periods import Period
from rules.stage_label import stage_label
from rules.verdicts import grade, make_finding, plural, tiers


class Params(MeasureParams):
    ahead_at: float | None = Field(2.0, gt=1)  # report reps at this multiple of pace or more; null: never
    teams: bool = True  # judge teams (the sum of their reps) too
    min_quota: float = Field(0, ge=0)  # reps with a smaller quota are noted, not judged
    # The just-closed period is judged only when its shortfall is beyond chance: the p-value of
    # winning that little at quota rate (compound Poisson of the company's won deal sizes).
    previous_alpha: float = Field(0.01, gt=0, le=1)
    # The same test for pace; null (default): pace is judged on the tiers alone.
    pace_alpha: float | None = Field(None, gt=0, le=1)


DEFAULT_TIERS = SeverityTiers(warn=0.6, critical=0.35)


def _money(amount: float, currency: str) -> str:
    return f"{amount:,.0f} {currency}"


def _pct(share: float | None) -> str:
    return "n/a" if share is None else f"{100 * share:.0f} %"


class QuotaAttainment:
    name: ClassVar[str] = "quota_attainment"
    Params: ClassVar[type[Params]] = Params
    default_tiers: ClassVar[SeverityTiers] = DEFAULT_TIERS

    def evaluate(self, rule: Rule, warehouse: Warehouse, now: datetime) -> Evaluation:
        params = Params(**rule.params)
        levels = tiers(rule, DEFAULT_TIERS)
        period, current = measure_current(rule, warehouse, now, params)
        early = current.elapsed < params.min_elapsed
        previous = measure_period(warehouse, period.previous(), now, rule.scope, params) if early else None
        judge = _Judge(rule, params, levels, warehouse, now, period, current.elapsed)
        judge.sizes = deal_sizes(warehouse, now, params.win_rate_days)
        findings: list[Finding] = []
        notes: list[Note] = []
        for rep, m in current.reps.values():
            subject = Subject("rep", rep.id, rep.name, rep.team)
            if not m.quota or m.quota <= params.min_quota:
                if m.won or m.pipeline.count:  # a seller without a quota, not a manager or an admin
                    notes.append(Note(rule.id, subject, f"no quota for {period.label()}: not evaluated"))
                continue
            before = previous.reps.get(rep.id, (rep, None))[1] if previous else None
            found = judge.rep_or_team(subject, m, before, rep)
            if found:
                findings.append(found)
        if params.teams:
            for team_id, (name, m) in current.teams.items():
                before = previous.teams.get(team_id, (name, None))[1] if previous else None
                found = judge.rep_or_team(Subject("team", team_id, name, name), m, before, None)
                if found:
                    findings.append(found)
        return Evaluation(rule.id, rule.kind, now, tuple(findings), tuple(notes))


class _Judge:
    """Grades one rep's or team's measure; writes the finding."""

    def __init__(
        self,
        rule: Rule,
        params: Params,
        levels: SeverityTiers,
        warehouse: Warehouse,
        now: datetime,
        period: Period,
        elapsed: float,
    ) -> None:
        self.rule, self.params, self.levels = rule, params, levels
        self.warehouse, self.now, self.period, self.elapsed = warehouse, now, period, elapsed
        self.currency = warehouse.company.reporting_currency
        self.sizes = DealSizes(0, 0.0, 0.0)  # won deal amounts, company-wide, for the chance tests

    def rep_or_team(self, subject: Subject, m: Measure, before: Measure | None, rep: RepInfo | None) -> Finding | None:
        if self.elapsed >= self.params.min_elapsed:
            return self._pace(subject, m, rep)
        return self._early(subject, m, before, rep)

    def _details(self, m: Measure) -> dict[str, object]:
        low, high = m.projected_interval()
        days_left = self.period.days_left(self.now)
        return {
            "period": self.period.label(),
            "period_start": self.period.start.isoformat(),
            "period_end": self.period.end.isoformat(),
            "elapsed": round(self.elapsed, 4),
            "quota": round(m.quota or 0.0, 2),
            "target": round(m.target, 2),
            "expected_to_date": round(m.expected, 2),
            "won": round(m.won, 2),
            "deals_won": m.deals_won,
            "attainment": m.attainment,
            "pace": m.pace,
            "projected": m.share_of_target(m.projected),
            "projected_low": m.share_of_target(low),
            "projected_high": m.share_of_target(high),
            "open_deals_in_period": m.pipeline.count,
            "open_amount_in_period": round(m.pipeline.amount, 2),
            "required_daily": round(m.remaining / days_left, 2) if days_left > 0 else None,
            "days_left": round(days_left, 1),
            "currency": self.currency,
        }

    def _pace(self, subject: Subject, m: Measure, rep: RepInfo | None) -> Finding | None:
        pace = m.pace
        if pace is None:
            return None
        severity: Severity | None = grade(pace, self.levels, "below")
        if severity and self.params.pace_alpha is not None:
            chance = self.sizes.shortfall_p(m.won, m.expected)
            if chance is None or chance >= self.params.pace_alpha:
                severity = None
        ahead = self.params.ahead_at is not None and pace >= self.params.ahead_at
        if severity is None and not ahead:
            return None
        details = self._details(m)
        low, high = m.projected_interval()
        low_text, high_text = _pct(m.share_of_target(low)), _pct(m.share_of_target(high))
        span = low_text if low_text == high_text else f"{low_text}-{high_text}"
        projection = f"projected {span} of quota at period end" if m.target else "no projection"
        won = f"{_money(m.won, self.currency)} won ({plural(m.deals_won, 'deal')})"
        expected = f"the {_money(m.expected, self.currency)} expected by now"
        gone = f"{_pct(self.elapsed)} of {self.period.label()} gone"
        if ahead and severity is None:
            explanation = (
                f"{subject.name} is at {_pct(pace)} of quota pace: {won} against {expected} ({gone}); {projection}."
            )
            details["direction"] = "ahead"
            return self._finding(subject, "warn", pace, m, explanation, details, rep, won_samples=True)
        required = details["required_daily"]
        need = f"; needs {_money(float(required), self.currency)} a day to make quota" if required else ""
        explanation = (
            f"{subject.name} is at {_pct(pace)} of quota pace: {won} against {expected} ({gone}); {projection}{need}."
        )
        details["direction"] = "behind"
        return self._finding(subject, severity or "warn", pace, m, explanation, details, rep, won_samples=False)

    def _early(self, subject: Subject, m: Measure, before: Measure | None, rep: RepInfo | None) -> Finding | None:
        """Before ``min_elapsed``: last period's attainment, or a projection whose whole interval is short."""
        candidates: list[tuple[Severity, float, str, dict[str, object]]] = []
        chance = self.sizes.shortfall_p(before.won, before.target) if before is not None else None
        if before is not None and chance is not None and chance < self.params.previous_alpha:
            ended = before.won / before.target
            severity = grade(ended, self.levels, "below")
            if severity:
                label = self.period.previous().label()
                candidates.append(
                    (
                        severity,
                        ended,
                        f"{subject.name} ended {label} at {_pct(ended)} of quota "
                        f"({_money(before.won, self.currency)} of {_money(before.target, self.currency)}, "
                        f"{plural(before.deals_won, 'deal')} won); {_pct(self.elapsed)} of {self.period.label()} "
                        f"is too early to judge its pace.",
                        {
                            "basis": "previous_period",
                            "previous_period": label,
                            "previous_attainment": ended,
                            "p_value": chance,
                        },
                    )
                )
        if m.target > 0 and m.pipeline.count >= self.params.min_projection_deals:
            low, high = m.projected_interval()
            upper = high / m.target
            severity = grade(upper, self.levels, "below")
            if severity:
                candidates.append(
                    (
                        severity,
                        upper,
                        f"{subject.name} is projected to reach only {_pct(low / m.target)}-{_pct(upper)} of quota "
                        f"by the end of {self.period.label()} (80 % interval: won so far plus open deals closing "
                        f"in the period weighted by their stage's win rate).",
                        {"basis": "projection"},
                    )
                )
        if not candidates:
            return None
        order = {"critical": 0, "warn": 1}
        severity, value, explanation, extra = min(candidates, key=lambda c: (order[c[0]], c[1]))
        details = {**self._details(m), **extra, "direction": "behind"}
        return self._finding(subject, severity, value, m, explanation, details, rep, won_samples=False)

    def _finding(
        self,
        subject: Subject,
        severity: Severity,
        value: float,
        m: Measure,
        explanation: str,
        details: dict[str, object],
        rep: RepInfo | None,
        *,
        won_samples: bool,
    ) -> Finding:
        samples = self._samples(rep, won_samples) if rep is not None else ()
        finding = make_finding(
            self.rule,
            self.now,
            subject=subject,
            severity=severity,
            value=round(value, 4),
            baseline=1.0,
            sample_size=m.deals_won,
            unit="ratio",
            explanation=explanation,
            samples=samples,
            details=details,
        )
        if details.get("direction") == "ahead":
            labels = {**finding.labels, "direction": "ahead"}
            return replace(finding, labels=labels)
        return finding

    def _samples(self, rep: RepInfo, won: bool) -> tuple[SampleRecord, ...]:
        """Ahead: the biggest deals won in the period. Behind: the biggest open deals closing in it."""
        limit = self.params.max_samples
        if not limit:
            return ()
        if won:
            o = opportunities.c
            rows = self.warehouse.conn.execute(
                select(o.id, o.name, o.amount_reporting, stage_label(o.source, o.pipeline, o.stage).label("stage"))
                .add_columns(o.crm_url)
                .where(
                    o.owner_id == rep.id,
                    o.is_won.is_(True),
                    o.deleted_at.is_(None),
                    o.close_date >= self.period.start,
                    o.close_date <= self.period.end,
                )
                .order_by(o.amount_reporting.desc(), o.id)
                .limit(limit)
            )
        else:
            shown = ("id", "name", "owner_id", "source", "pipeline", "stage", "amount_reporting", "close_date")
            d = open_deals_at(self.now, (*shown, "crm_url")).c
            rows = self.warehouse.conn.execute(
                select(d.id, d.name, d.amount_reporting, stage_label(d.source, d.pipeline, d.stage).label("stage"))
                .add_columns(d.crm_url)
                .where(d.owner_id == rep.id, d.close_date >= self.period.start, d.close_date <= self.period.end)
                .order_by(d.amount_reporting.desc(), d.id)
                .limit(limit)
            )
        return tuple(
            SampleRecord(
                id=row.id,
                name=row.name or row.id,
                amount=float(row.amount_reporting) if row.amount_reporting is not None else None,
                owner=rep.name,
                stage=row.stage,
                url=row.crm_url,
            )
            for row in rows
        )
