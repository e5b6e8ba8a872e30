"""``lead_distribution``: a team's new leads going to a few of its reps.

Counts the leads assigned to each rep of a team in the last ``window_days`` before T.
Reps who take leads are the active reps of the team who were assigned at least one lead in
the window or in the ``eligibility_days`` before it (managers and reps who never work
leads are not short-changed); a rep hired during the window has their capacity scaled by
the share of the window since ``hired_on``. Capacity weights default to equal and can be
set per rep (name, e-mail or id) in ``weights``; weight 0 takes a rep out (on leave).

Formula, per team with reps i, leads x_i, weights w_i, N = sum x_i:
expected e_i = N w_i / sum w; chi-square goodness of fit sum (x_i - e_i)^2 / e_i with
k - 1 degrees of freedom (scipy.stats.chisquare), not run when any e_i < 5 (a note says
so); Gini coefficient of the per-capacity loads l_i = x_i / w_i,
G = sum_i sum_j |l_i - l_j| / (2 k^2 mean(l)); max/min ratio of l_i. Reported when the
p-value < ``alpha`` and G reaches the tiers (default warn 0.2, critical 0.35); the finding
names the reps over ``over_ratio`` x and under ``under_ratio`` x their expected share.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Annotated, ClassVar

from pydantic import Field
from scipy.stats import chisquare
from sqlalchemy import case, func, select

from models.tables import leads, reps
from rules.asof import alive_at
from rules.findings import Evaluation, Note, Subject
from rules.model import Rule, SeverityTiers, Warehouse
from rules.names import NameOf
from rules.scoping import rep_condition
from rules.verdicts import KindParams, make_finding, significant, tiers


class Params(KindParams):
    window_days: int = Field(30, ge=7)  # leads assigned in this many days before the evaluation
    eligibility_days: int = Field(90, ge=0)  # a rep assigned a lead in these days before the window takes leads
    # capacity by rep name, e-mail or id; default 1
    weights: dict[Annotated[str, NameOf("rep")], float] = Field(default_factory=dict)
    alpha: float = Field(0.001, gt=0, lt=0.5)  # chi-square test level
    min_reps: int = Field(2, ge=2)  # reps taking leads a team needs to be judged
    over_ratio: float = Field(1.5, gt=1)  # named as over-served above this multiple of the expected count
    under_ratio: float = Field(0.5, gt=0, lt=1)  # named as under-served below this multiple


@dataclass(frozen=True)
class _Rep:
    id: str
    name: str
    email: str | None
    team_id: str
    team: str
    hired_on: date | None
    in_window: int
    before: int


def gini(loads: list[float]) -> float:
    """Gini coefficient: 0 when every load is equal, towards 1 when one rep takes everything."""
    mean = sum(loads) / len(loads) if loads else 0.0
    if mean == 0:
        return 0.0
    total = sum(abs(a - b) for a in loads for b in loads)
    return total / (2 * len(loads) ** 2 * mean)


class LeadDistribution:
    name: ClassVar[str] = "lead_distribution"
    Params: ClassVar[type[Params]] = Params
    default_tiers: ClassVar[SeverityTiers] = SeverityTiers(warn=0.2, critical=0.35)

    def _reps(self, rule: Rule, warehouse: Warehouse, now: datetime, params: Params) -> list[_Rep]:
        start = now - timedelta(days=params.window_days)
        since = start - timedelta(days=params.eligibility_days)
        counts = (
            select(
                leads.c.owner_id,
                func.sum(case((leads.c.assigned_at > start, 1), else_=0)).label("in_window"),
                func.sum(case((leads.c.assigned_at <= start, 1), else_=0)).label("before"),
            )
            .where(leads.c.assigned_at > since, leads.c.assigned_at <= now, leads.c.created_at <= now,
                   alive_at(leads, now))
            .group_by(leads.c.owner_id)
            .subquery()
        )  # fmt: skip
        rows = warehouse.conn.execute(
            select(reps.c.id, reps.c.name, reps.c.email, reps.c.team_id, reps.c.team, reps.c.hired_on,
                   counts.c.in_window, counts.c.before)
            .join_from(counts, reps, reps.c.id == counts.c.owner_id)
            .where(reps.c.is_active.is_(True), reps.c.team_id.is_not(None), alive_at(reps, now),
                   rep_condition(rule.scope, reps))
        ).all()  # fmt: skip
        return [
            _Rep(r[0], r[1], r[2], r[3], r[4] or r[3], r[5], int(r[6] or 0), int(r[7] or 0))
            for r in rows
            if (r[6] or 0) + (r[7] or 0) > 0
        ]

    def _weight(self, rep: _Rep, params: Params, now: datetime) -> float:
        named = {k.lower(): v for k, v in params.weights.items()}
        weight = 1.0
        for key in (rep.id, rep.name, rep.email):
            if key and key.lower() in named:
                weight = named[key.lower()]
                break
        if rep.hired_on is not None:
            start = (now - timedelta(days=params.window_days)).date()
            if rep.hired_on > start:
                weight *= max(0.0, (now.date() - rep.hired_on).days / params.window_days)
        return weight

    def evaluate(self, rule: Rule, warehouse: Warehouse, now: datetime) -> Evaluation:
        params = Params(**rule.params)
        chosen = tiers(rule, self.default_tiers)
        teams: dict[str, list[tuple[_Rep, float]]] = defaultdict(list)
        for rep in self._reps(rule, warehouse, now, params):
            weight = self._weight(rep, params, now)
            if weight > 0:
                teams[rep.team_id].append((rep, weight))
        findings, notes = [], []
        for team_id, members in sorted(teams.items()):
            team = members[0][0].team
            subject = Subject("team", team_id, team, team)
            total = sum(r.in_window for r, _ in members)
            if len(members) < params.min_reps:
                continue
            weight_sum = sum(w for _, w in members)
            expected = [total * w / weight_sum for _, w in members]
            if min(expected) < 5:
                notes.append(
                    Note(rule.id, subject, f"not evaluated: {total:,} leads in {params.window_days} days over "
                         f"{len(members)} reps leaves an expected count under 5 (chi-square needs at least 5)")
                )  # fmt: skip
                continue
            observed = [r.in_window for r, _ in members]
            p_value = float(chisquare(observed, expected).pvalue)
            loads = [r.in_window / w for r, w in members]
            g = gini(loads)
            severity = significant(g, chosen, "above", p_value, params.alpha)
            if severity is None:
                continue
            per_rep = sorted(
                (
                    {
                        "rep_id": r.id,
                        "rep": r.name,
                        "leads": r.in_window,
                        "expected": round(e, 1),
                        "share": round(r.in_window / total, 4),
                        "expected_share": round(e / total, 4),
                    }
                    for (r, _), e in zip(members, expected, strict=True)
                ),
                key=lambda x: (-x["leads"], x["rep"]),
            )
            over = [x for x in per_rep if x["leads"] > params.over_ratio * x["expected"]]
            under = [x for x in per_rep if x["leads"] < params.under_ratio * x["expected"]]

            def says(items: list[dict]) -> str:
                return ", ".join(
                    f"{x['rep']} {x['leads']} ({x['share']:.0%} vs {x['expected_share']:.0%})" for x in items
                )

            low = min(loads)
            ratio = max(loads) / low if low > 0 else None
            findings.append(
                make_finding(
                    rule,
                    now,
                    subject=subject,
                    severity=severity,
                    value=round(g, 4),
                    baseline=0.0,
                    sample_size=total,
                    unit="ratio",
                    explanation=(
                        f"{team}: the {total:,} leads of the last {params.window_days} days went unevenly to its "
                        f"{len(members)} reps (Gini {g:.2f}, chi-square p = {p_value:.1g}); over-served: "
                        f"{says(over) or 'none'}; under-served: {says(under) or 'none'} (share vs expected)."
                    ),
                    details={"per_rep": per_rep, "p_value": p_value, "gini": round(g, 4),
                             "max_min_ratio": None if ratio is None else round(ratio, 2),
                             "over_served": [x["rep_id"] for x in over],
                             "under_served": [x["rep_id"] for x in under]},
                )
            )  # fmt: skip
        return Evaluation(rule.id, rule.kind, now, tuple(findings), tuple(notes))
