"""``lead_qualification_rate``: many leads, few qualified, compared with the group's own past.

Leads qualify over weeks, so a cohort is judged once it is ``maturity_days`` old: the
current cohort is the leads created in the ``window_days`` ending ``maturity_days`` before
T, the baseline the leads created in the ``baseline_days`` before that. Qualified means
``is_qualified`` or converted. Grouped per team (``group_by: team``, the owner's team) or
per lead source (``group_by: source``).

A lead's qualification is today's status (the CRMs keep no history of it), so an evaluation
as of a past instant counts leads qualified since; with the default 45 days of maturity
most leads have settled by then.

Formula, per group: k qualified of n current leads, baseline rate p0 = k0 / n0; one-sided
exact binomial test P(X <= k | n, p0) (scipy.stats.binomtest, alternative "less").
Reported when n >= ``min_leads``, n0 >= ``min_baseline``, p-value < ``alpha`` and the ratio
(k / n) / p0 reaches the tiers (below; default warn 0.7, critical 0.5). Value k / n,
baseline p0, sample size n.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import ClassVar, Literal

from pydantic import Field
from sqlalchemy import case, func, literal, or_, select, union_all

from models.tables import leads, reps
from rules.asof import alive_at
from rules.findings import Evaluation, Subject
from rules.model import Rule, SeverityTiers, Warehouse
from rules.scoping import rep_condition
from rules.verdicts import KindParams, binomial_p, share_finding, significant, tiers


class Params(KindParams):
    group_by: Literal["team", "source"] = "team"
    window_days: int = Field(30, ge=7)  # the cohort judged
    maturity_days: int = Field(45, ge=0)  # how old a cohort must be before it is judged
    baseline_days: int = Field(365, ge=30)  # the cohorts before it, for the expected rate
    min_leads: int = Field(50, ge=10)  # leads the current cohort needs
    min_baseline: int = Field(200, ge=10)  # leads the baseline needs
    alpha: float = Field(0.001, gt=0, lt=0.5)  # binomial test level


class LeadQualificationRate:
    name: ClassVar[str] = "lead_qualification_rate"
    Params: ClassVar[type[Params]] = Params
    default_tiers: ClassVar[SeverityTiers] = SeverityTiers(warn=0.7, critical=0.5)

    def evaluate(self, rule: Rule, warehouse: Warehouse, now: datetime) -> Evaluation:
        params = Params(**rule.params)
        chosen = tiers(rule, self.default_tiers)
        end = now - timedelta(days=params.maturity_days)
        split = end - timedelta(days=params.window_days)
        start = split - timedelta(days=params.baseline_days)
        qualified = or_(leads.c.is_qualified.is_(True), leads.c.is_converted.is_(True))
        # Per owner and lead source first, each cohort on its own, in the cohort index's order (owner, source,
        # created): the grouping streams from the index; the few per-owner rows then meet their team.
        cohorts = [
            select(leads.c.owner_id, leads.c.lead_source, literal(is_current).label("current"),
                   func.sum(case((qualified, 1), else_=0)).label("qualified"), func.count().label("leads"))
            .where(leads.c.created_at > lo, leads.c.created_at <= hi, alive_at(leads, now))
            .group_by(leads.c.owner_id, leads.c.lead_source)
            for is_current, lo, hi in ((0, start, split), (1, split, end))
        ]  # fmt: skip
        per_owner = union_all(*cohorts).subquery("per_owner")
        o = per_owner.c
        source = func.coalesce(o.lead_source, "(none)")
        key, name = (reps.c.team_id, reps.c.team) if params.group_by == "team" else (source, source)
        rows = warehouse.conn.execute(
            select(key, func.max(name), o.current, func.sum(o.qualified), func.sum(o.leads))
            .join_from(per_owner, reps, reps.c.id == o.owner_id)
            .where(rep_condition(rule.scope, reps))
            .group_by(key, o.current)
        ).all()
        tally: dict[str, dict] = {}
        for key, name, is_current, k, n in rows:
            if key is None:
                continue
            tally.setdefault(key, {"name": name})[int(is_current)] = (int(k), int(n))
        findings = []
        for key, item in sorted(tally.items()):
            k, n = item.get(1, (0, 0))
            k0, n0 = item.get(0, (0, 0))
            if n < params.min_leads or n0 < params.min_baseline or k0 == 0:
                continue
            rate, p0 = k / n, k0 / n0
            p_value = binomial_p(k, n, p0, "less")
            severity = significant(rate / p0, chosen, "below", p_value, params.alpha)
            if severity is None:
                continue
            name = item["name"]
            subject = (
                Subject("team", key, name, name) if params.group_by == "team" else Subject("lead_source", key, name)
            )
            findings.append(
                share_finding(
                    rule,
                    now,
                    subject=subject,
                    severity=severity,
                    share=rate,
                    baseline=p0,
                    sample_size=n,
                    explanation=(
                        f"{name}: {k:,} of {n:,} leads created {split:%Y-%m-%d} to {end:%Y-%m-%d} qualified "
                        f"({rate:.0%}), against {p0:.0%} of {n0:,} in the {params.baseline_days} days before "
                        f"(binomial p = {p_value:.1g})."
                    ),
                    details={"qualified": k, "leads": n, "baseline_qualified": k0, "baseline_leads": n0,
                             "ratio": round(rate / p0, 3), "p_value": p_value},
                )
            )  # fmt: skip
        return Evaluation(rule.id, rule.kind, now, tuple(findings))
