"""``lead_distribution``: a team's new leads going to a few of its reps.

Counts the leads assigned to each rep of a team in the last ``window_days`` before T.
Reps who take leads are the active reps of the team who were assigned at least one lead in
the window or in the ``eligibility_days`` before it (managers and reps who never work
leads are not short-changed).

A rep's capacity c_i (1 = a full share; 0 takes the rep out), the first that names the rep
(by name, e-mail or id): the rule's ``weights`` param, then the quota file's
``lead_capacity`` column (``reps.lead_capacity``), then the settings' ``[company]
lead_capacity``, else 1. A rule overrides for its scope what the admin keeps for everyone.
The weight is the capacity times the share of the window the rep worked:
w_i = c_i * (days of the window after ``hired_on`` and outside the leave
``leave_from``..``leave_until`` of the quota file) / ``window_days``; a rep on leave or not
yet hired for the whole window has w_i = 0 and is not judged. The finding names each named
rep's capacity and where it came from.

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

from models.settings import CompanySettings
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
    # capacity by rep name, e-mail or id; wins over the quota file's and the settings' (default 1)
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
    capacity: float | None  # the quota file's
    leave_from: date | None
    leave_until: date | None
    in_window: int
    before: int


@dataclass(frozen=True)
class Capacity:
    """A rep's capacity, where it came from, and the weight it gives over the window."""

    capacity: float
    source: str  # "rule", "quota file", "settings", "default"
    weight: float  # capacity x share of the window worked

    def says(self) -> str:
        worked = f", {self.weight / self.capacity:.0%} of the window worked" if 0 < self.weight < self.capacity else ""
        return f"capacity {self.capacity:g} ({self.source}{worked})"


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
                   reps.c.lead_capacity, reps.c.leave_from, reps.c.leave_until, counts.c.in_window, counts.c.before)
            .join_from(counts, reps, reps.c.id == counts.c.owner_id)
            .where(reps.c.is_active.is_(True), reps.c.team_id.is_not(None), alive_at(reps, now),
                   rep_condition(rule.scope, reps))
        ).all()  # fmt: skip
        return [
            _Rep(r[0], r[1], r[2], r[3], r[4] or r[3], r[5], r[6], r[7], r[8], int(r[9] or 0), int(r[10] or 0))
            for r in rows
            if (r[9] or 0) + (r[10] or 0) > 0
        ]

    @staticmethod
    def _capacity(rep: _Rep, params: Params, company: CompanySettings, now: datetime) -> Capacity:
        """The rep's capacity by precedence (rule > quota file > settings > 1), scaled by the days worked."""
        keys = [k.lower() for k in (rep.id, rep.name, rep.email) if k]

        def named(given: dict[str, float]) -> float | None:
            lowered = {k.lower(): v for k, v in given.items()}
            return next((lowered[k] for k in keys if k in lowered), None)

        given = (
            (named(params.weights), "rule"),
            (rep.capacity, "quota file"),
            (named(company.lead_capacity), "settings"),
            (1.0, "default"),
        )
        capacity, source = next((float(c), s) for c, s in given if c is not None)
        first, last = (now - timedelta(days=params.window_days)).date(), now.date()  # days first .. last - 1
        if rep.hired_on is not None:
            first = max(first, rep.hired_on)
        worked = max(0, (last - first).days)
        if rep.leave_from is not None and worked:
            leave_end = min(last, (rep.leave_until or last) + timedelta(days=1))
            worked -= max(0, (leave_end - max(first, rep.leave_from)).days)
        return Capacity(capacity, source, capacity * worked / params.window_days)

    def evaluate(self, rule: Rule, warehouse: Warehouse, now: datetime) -> Evaluation:
        params = Params(**rule.params)
        chosen = tiers(rule, self.default_tiers)
        teams: dict[str, list[tuple[_Rep, float]]] = defaultdict(list)
        capacities: dict[str, Capacity] = {}
        for rep in self._reps(rule, warehouse, now, params):
            capacities[rep.id] = self._capacity(rep, params, warehouse.company, now)
            if capacities[rep.id].weight > 0:
                teams[rep.team_id].append((rep, capacities[rep.id].weight))
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
                        "capacity": capacities[r.id].capacity,
                        "capacity_from": capacities[r.id].source,
                        "weight": round(capacities[r.id].weight, 4),
                    }
                    for (r, _), e in zip(members, expected, strict=True)
                ),
                key=lambda x: (-x["leads"], x["rep"]),
            )
            over = [x for x in per_rep if x["leads"] > params.over_ratio * x["expected"]]
            under = [x for x in per_rep if x["leads"] < params.under_ratio * x["expected"]]

            def says(items: list[dict]) -> str:
                return ", ".join(
                    f"{x['rep']} {x['leads']} ({x['share']:.0%} vs {x['expected_share']:.0%}, "
                    f"{capacities[x['rep_id']].says()})"
                    for x in items
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
                        f"{says(over) or 'none'}; under-served: {says(under) or 'none'} (share vs expected, capacity)."
                    ),
                    details={"per_rep": per_rep, "p_value": p_value, "gini": round(g, 4),
                             "max_min_ratio": None if ratio is None else round(ratio, 2),
                             "over_served": [x["rep_id"] for x in over],
                             "under_served": [x["rep_id"] for x in under]},
                )
            )  # fmt: skip
        return Evaluation(rule.id, rule.kind, now, tuple(findings), tuple(notes))
