"""``lead_response_time``: reps and teams slow to touch the leads they are given.

A lead assigned at ``a`` breaches the SLA when no activity on it falls in
[a, a + ``sla_hours``]. Leads assigned in the ``window_days`` ending ``sla_hours`` before T
are judged (each had its full SLA before T).

The share breaching is compared with the rest of the company, not only with a fixed bar:
where the CRM logs few first touches (or everyone is slow) every rep breaches, and naming
all of them is noise; what an ops lead acts on is the rep or team much slower than the
others. Formula, per rep (and per team): k breaches of n leads, the rest of the company's
rate p0 = (K - k) / (N - n); one-sided exact binomial test P(X >= k | n, p0)
(scipy.stats.binomtest, "greater"). Reported when n >= ``min_leads``, p-value < ``alpha``,
k / n - p0 >= ``min_excess`` and k / n reaches the tiers (above; default warn 0.5,
critical 0.8). Value k / n, baseline p0, sample size n; samples are the longest-waiting breaching leads.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta
from typing import ClassVar

from pydantic import Field
from sqlalchemy import case, exists, func, select

from models.sqltime import days_between
from models.tables import activities, leads, reps
from rules.asof import alive_at
from rules.findings import Evaluation, Finding, SampleRecord, Subject
from rules.model import Rule, SeverityTiers, Warehouse
from rules.scoping import rep_condition
from rules.verdicts import KindParams, binomial_p, share_finding, significant, tiers


class Params(KindParams):
    sla_hours: float = Field(24, gt=0)  # first touch expected within this many hours of assignment
    window_days: int = Field(30, ge=1)  # leads assigned in this many days are judged
    min_leads: int = Field(20, ge=5)  # leads a rep or team needs to be judged
    min_excess: float = Field(0.2, ge=0, le=1)  # breach share over the rest of the company, in points
    alpha: float = Field(0.001, gt=0, lt=0.5)  # binomial test level


class LeadResponseTime:
    name: ClassVar[str] = "lead_response_time"
    Params: ClassVar[type[Params]] = Params
    default_tiers: ClassVar[SeverityTiers] = SeverityTiers(warn=0.5, critical=0.8)

    def evaluate(self, rule: Rule, warehouse: Warehouse, now: datetime) -> Evaluation:
        params = Params(**rule.params)
        chosen = tiers(rule, self.default_tiers)
        end = now - timedelta(hours=params.sla_hours)
        start = end - timedelta(days=params.window_days)
        a = activities
        touched = exists(
            select(a.c.id).where(
                a.c.lead_id == leads.c.id,
                a.c.occurred_at >= leads.c.assigned_at,
                a.c.occurred_at <= now,
                days_between(leads.c.assigned_at, a.c.occurred_at) <= params.sla_hours / 24,
                alive_at(a, now),
            )
        )
        judged = (
            select()
            .join_from(leads, reps, reps.c.id == leads.c.owner_id)
            .where(leads.c.assigned_at > start, leads.c.assigned_at <= end, leads.c.created_at <= now,
                   alive_at(leads, now), rep_condition(rule.scope, reps))
        )  # fmt: skip
        rows = warehouse.conn.execute(
            judged.add_columns(reps.c.id, reps.c.name, reps.c.team_id, reps.c.team,
                               func.sum(case((touched, 0), else_=1)), func.count())
            .group_by(reps.c.id, reps.c.name, reps.c.team_id, reps.c.team)
        ).all()  # fmt: skip

        def samples(subject: Subject) -> tuple[SampleRecord, ...]:
            """The subject's longest-waiting leads without a first touch in time (``days``: since assigned)."""
            if params.max_samples <= 0:
                return ()
            mine = reps.c.id == subject.id if subject.type == "rep" else reps.c.team_id == subject.id
            waiting = warehouse.conn.execute(
                judged.add_columns(leads.c.id, leads.c.name, reps.c.name.label("owner"), leads.c.status,
                                   days_between(leads.c.assigned_at, now).label("days"))
                .where(mine, ~touched)
                .order_by(leads.c.assigned_at, leads.c.id)
                .limit(params.max_samples)
            ).mappings()  # fmt: skip
            return tuple(
                SampleRecord(r["id"], r["name"] or r["id"], owner=r["owner"], stage=r["status"],
                             days=round(float(r["days"]), 1))
                for r in waiting
            )  # fmt: skip

        total_k = sum(int(r[4]) for r in rows)
        total_n = sum(int(r[5]) for r in rows)
        team_counts: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
        for _id, _name, team_id, team, k, n in rows:
            if team_id:
                team_counts[(team_id, team or team_id)][0] += int(k)
                team_counts[(team_id, team or team_id)][1] += int(n)
        findings: list[Finding] = []
        subjects = [(Subject("rep", r[0], r[1], r[3]), int(r[4]), int(r[5])) for r in sorted(rows)]
        subjects += [(Subject("team", tid, name, name), k, n) for (tid, name), (k, n) in sorted(team_counts.items())]
        for subject, k, n in subjects:
            rest_n = total_n - n
            if n < params.min_leads or rest_n < params.min_leads:
                continue
            share, p0 = k / n, (total_k - k) / rest_n
            if share - p0 < params.min_excess:
                continue
            p_value = binomial_p(k, n, p0, "greater")
            severity = significant(share, chosen, "above", p_value, params.alpha)
            if severity is None:
                continue
            findings.append(
                share_finding(
                    rule,
                    now,
                    subject=subject,
                    severity=severity,
                    share=share,
                    baseline=p0,
                    sample_size=n,
                    samples=samples(subject),
                    explanation=(
                        f"{subject.name}: {k:,} of {n:,} leads assigned in the {params.window_days} days to "
                        f"{end:%Y-%m-%d} had no activity within {params.sla_hours:g} hours ({share:.0%}), against "
                        f"{p0:.0%} for the rest of the company (binomial p = {p_value:.1g})."
                    ),
                    details={"breached": k, "leads": n, "rest_breached": total_k - k, "rest_leads": rest_n,
                             "p_value": p_value, "sla_hours": params.sla_hours},
                )
            )  # fmt: skip
        return Evaluation(rule.id, rule.kind, now, tuple(findings))
