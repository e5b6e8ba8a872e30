"""The funnel kinds computed the naive way, for bench/rules_bench.py: load the rows, loop in Python.

This is what the evaluators avoid (every deal, stage change, activity and lead crosses into
Python), kept as a baseline to time them against and as an independent check of their
answers: the bench requires both to name the same subjects with the same severity and value.
Only the defaults the default pack uses are implemented (no scope, no stage filter).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from scipy.stats import binomtest, chisquare, norm
from sqlalchemy import Connection, select

from models.settings import CompanySettings
from models.tables import activities, close_date_changes, leads, opportunities, reps, stage_changes, stages
from rules.kinds import close_date_slipped as slipped
from rules.kinds import deal_no_activity as no_activity
from rules.kinds import lead_distribution as distribution
from rules.kinds import lead_qualification_rate as qualification
from rules.kinds import lead_response_time as response
from rules.kinds import stage_conversion_drop as conversion
from rules.kinds import stalled_stage as stalled
from rules.model import Rule
from rules.periods import period_of
from rules.verdicts import grade, tiers

Verdict = tuple[str, str, float]  # subject id, severity, value


@dataclass
class Rows:
    """Every row the funnel kinds read, loaded whole."""

    deals: list[Any]
    changes: list[Any]
    pushes: list[Any]
    activities: list[Any]
    leads: list[Any]
    reps: dict[str, Any]
    stages: dict[tuple[str, str, str], Any]

    @classmethod
    def load(cls, conn: Connection) -> Rows:
        def all_of(table: Any) -> list[Any]:
            return list(conn.execute(select(table)))

        return cls(
            all_of(opportunities),
            all_of(stage_changes),
            all_of(close_date_changes),
            list(conn.execute(select(activities.c.opportunity_id, activities.c.lead_id, activities.c.occurred_at,
                                     activities.c.deleted_at))),
            all_of(leads),
            {r.id: r for r in all_of(reps)},
            {(s.source, s.pipeline, s.api_name): s for s in all_of(stages)},
        )  # fmt: skip


def _alive(row: Any, t: datetime) -> bool:
    return row.deleted_at is None or row.deleted_at > t


class Funnel:
    """Deal state at T rebuilt from the loaded history."""

    def __init__(self, rows: Rows, t: datetime, company: CompanySettings) -> None:
        self.rows, self.t, self.company = rows, t, company
        self.changes_of: dict[str, list[Any]] = defaultdict(list)
        for c in rows.changes:
            self.changes_of[c.opportunity_id].append(c)
        for changes in self.changes_of.values():
            changes.sort(key=lambda c: (c.changed_at, c.id))
        self.open: list[tuple[Any, str, datetime]] = []  # deal, stage at t, entered at
        for d in rows.deals:
            if d.created_at > t or not _alive(d, t):
                continue
            mine = self.changes_of.get(d.id, [])
            before = [c for c in mine if c.changed_at <= t]
            stage = before[-1].to_stage if before else (mine[0].from_stage if mine and mine[0].from_stage else d.stage)
            entered = before[-1].changed_at if before else d.created_at
            info = rows.stages.get((d.source, d.pipeline, stage))
            if info is not None and not info.is_closed:
                self.open.append((d, stage, entered))


def _by_owner(rule: Rule, flagged: dict[str, int], min_deals: int, default: Any) -> set[Verdict]:
    out = set()
    for owner, count in flagged.items():
        severity = grade(count, tiers(rule, default), "above") if count >= min_deals else None
        if severity:
            out.add((owner, severity, float(count)))
    return out


def deal_no_activity(rule: Rule, rows: Rows, funnel: Funnel, t: datetime) -> set[Verdict]:
    params = no_activity.Params(**rule.params)
    last: dict[str, datetime] = {}
    for a in rows.activities:
        if a.opportunity_id and a.occurred_at <= t and _alive(a, t):
            last[a.opportunity_id] = max(last.get(a.opportunity_id, a.occurred_at), a.occurred_at)
    flagged: dict[str, int] = defaultdict(int)
    for d, _stage, _entered in funnel.open:
        if d.owner_id in rows.reps and last.get(d.id, d.created_at) < t - timedelta(days=params.days):
            flagged[d.owner_id] += 1
    return _by_owner(rule, flagged, params.min_deals, no_activity.DealNoActivity.default_tiers)


def close_date_slipped(rule: Rule, rows: Rows, funnel: Funnel, t: datetime) -> set[Verdict]:
    params = slipped.Params(**rule.params)
    period = period_of(params.period, t, funnel.company)
    pushes: dict[str, int] = defaultdict(int)
    moves: dict[str, list[Any]] = defaultdict(list)
    for p in rows.pushes:
        moves[p.opportunity_id].append(p)
        if p.changed_at <= t and p.new_date and p.old_date and p.new_date > p.old_date:
            pushes[p.opportunity_id] += 1
    mine = [d for d, _stage, _entered in funnel.open if d.owner_id in rows.reps]
    out: set[str] = set()
    for d in mine:
        history = sorted(moves.get(d.id, ()), key=lambda c: (c.changed_at, c.id))
        later = [c for c in history if c.changed_at > t]
        close = later[0].old_date if later and (d.updated_at or d.synced_at) > t else d.close_date
        left = [c for c in history if period.start_utc <= c.changed_at <= t and c.old_date and c.new_date
                and period.start <= c.old_date <= period.end < c.new_date]  # fmt: skip
        if params.past_period_end and left and close and close > period.end:
            out.add(d.id)
    owned: dict[str, int] = defaultdict(int)
    outs: dict[str, int] = defaultdict(int)
    for d in mine:
        owned[d.owner_id] += 1
        outs[d.owner_id] += d.id in out
    total_k, total_n = sum(outs.values()), sum(owned.values())
    counts = set()
    for owner, n in owned.items():
        k, rest_n = outs[owner], total_n - n
        if k < params.min_past_end or rest_n == 0:
            continue
        p_rest = (total_k - k) / rest_n
        p = binomtest(k, n, min(max(p_rest, 1e-9), 1 - 1e-9), alternative="greater").pvalue
        if k / n - p_rest >= params.past_end_excess and p < params.alpha:
            counts.add(owner)
    flagged: dict[str, int] = defaultdict(int)
    for d in mine:
        if pushes.get(d.id, 0) >= params.min_pushes or (d.id in out and d.owner_id in counts):
            flagged[d.owner_id] += 1
    return _by_owner(rule, flagged, params.min_deals, slipped.CloseDateSlipped.default_tiers)


def stalled_stage(rule: Rule, rows: Rows, funnel: Funnel, t: datetime) -> set[Verdict]:
    params = stalled.Params(**rule.params)
    deals = {d.id: d for d in rows.deals}
    histograms: dict[tuple, dict[int, int]] = defaultdict(lambda: defaultdict(int))
    for deal_id, changes in funnel.changes_of.items():
        d = deals.get(deal_id)
        if d is None or not _alive(d, t) or d.quarantine_id is not None:  # any owner: the funnel's history
            continue
        previous = d.created_at
        for c in changes:
            entered, previous = previous, c.changed_at
            if c.from_stage is None or c.changed_at > t or c.changed_at <= t - timedelta(days=params.history_days):
                continue
            key = (d.source, d.pipeline) + ((c.from_stage,) if params.baseline == "stage" else ())
            histograms[key][max(0, math.floor((c.changed_at - entered).total_seconds() / 86400))] += 1
    counts: dict[tuple[str, str, str], list[int]] = defaultdict(lambda: [0, 0])
    for d, stage, entered in funnel.open:
        if d.owner_id not in rows.reps:
            continue
        key = (d.source, d.pipeline) + ((stage,) if params.baseline == "stage" else ())
        history = histograms.get(key, {})
        if sum(history.values()) < params.min_history:
            continue
        limit = stalled._percentile(history, params.percentile)
        counts[(d.source, d.pipeline, stage)][0] += 1
        counts[(d.source, d.pipeline, stage)][1] += entered < t - timedelta(days=limit)
    out = set()
    q = 1 - params.percentile / 100
    for key, (n, k) in counts.items():
        if n < params.min_open or k < params.min_stalled:
            continue
        severity = grade(k / n, tiers(rule, stalled.StalledStage.default_tiers), "above")
        if severity and binomtest(k, n, q, alternative="greater").pvalue < params.alpha:
            out.add((rows.stages[key].id, severity, round(k / n, 4)))
    return out


def stage_conversion_drop(rule: Rule, rows: Rows, _funnel: Funnel, t: datetime) -> set[Verdict]:
    params = conversion.Params(**rule.params)
    deals = {d.id: d for d in rows.deals}
    split = t - timedelta(days=params.window_days)
    start = split - timedelta(days=params.baseline_days)
    tally: dict[tuple[str, int], list[int]] = defaultdict(lambda: [0, 0])
    for c in rows.changes:
        d = deals.get(c.opportunity_id)
        if d is None or not (start < c.changed_at <= t) or not _alive(d, t) or d.quarantine_id is not None:
            continue
        f = rows.stages.get((d.source, d.pipeline, c.from_stage))
        to = rows.stages.get((d.source, d.pipeline, c.to_stage))
        if f is None or to is None or f.is_closed:
            continue
        cell = tally[(f.id, int(c.changed_at > split))]
        cell[0] += to.sort_order > f.sort_order and not (to.is_closed and not to.is_won)
        cell[1] += 1
    out = set()
    for stage_id in {k[0] for k in tally}:
        (a1, n1), (a0, n0) = tally.get((stage_id, 1), [0, 0]), tally.get((stage_id, 0), [0, 0])
        if min(n1, n0) < params.min_exits or a0 == 0:
            continue
        p1, p0, pooled = a1 / n1, a0 / n0, (a1 + a0) / (n1 + n0)
        spread = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n0))
        z = (p1 - p0) / spread if spread > 0 else 0.0
        severity = grade(p1 / p0, tiers(rule, conversion.StageConversionDrop.default_tiers), "below")
        if severity and norm.cdf(z) < params.alpha:
            out.add((stage_id, severity, round(p1, 4)))
    return out


def lead_distribution(rule: Rule, rows: Rows, _funnel: Funnel, t: datetime) -> set[Verdict]:
    params = distribution.Params(**rule.params)
    start = t - timedelta(days=params.window_days)
    since = start - timedelta(days=params.eligibility_days)
    window: dict[str, int] = defaultdict(int)
    before: dict[str, int] = defaultdict(int)
    for lead in rows.leads:
        if lead.assigned_at and since < lead.assigned_at <= t and lead.created_at <= t and _alive(lead, t):
            (window if lead.assigned_at > start else before)[lead.owner_id] += 1
    teams: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for rep in rows.reps.values():
        if rep.is_active and rep.team_id and _alive(rep, t) and window[rep.id] + before[rep.id] > 0:
            named = {k.lower(): v for k, v in params.weights.items()}
            known = {k.lower(): v for k, v in _funnel.company.lead_capacity.items()}
            keys = [k.lower() for k in (rep.id, rep.name, rep.email) if k]
            capacity = next((named[k] for k in keys if k in named), None)
            capacity = rep.lead_capacity if capacity is None else capacity
            capacity = next((known[k] for k in keys if k in known), 1.0) if capacity is None else capacity
            days = [start.date() + timedelta(days=i) for i in range(params.window_days)]
            away = (rep.leave_from, rep.leave_until or date.max) if rep.leave_from else (date.max, date.max)
            worked = [
                day for day in days
                if (rep.hired_on is None or day >= rep.hired_on) and not away[0] <= day <= away[1]
            ]  # fmt: skip
            weight = capacity * len(worked) / params.window_days
            if weight > 0:
                teams[rep.team_id].append((window[rep.id], weight))
    out = set()
    for team_id, members in teams.items():
        total, weights = sum(c for c, _ in members), sum(w for _, w in members)
        expected = [total * w / weights for _, w in members]
        if len(members) < params.min_reps or min(expected) < 5:
            continue
        g = distribution.gini([c / w for c, w in members])
        severity = grade(g, tiers(rule, distribution.LeadDistribution.default_tiers), "above")
        if severity and chisquare([c for c, _ in members], expected).pvalue < params.alpha:
            out.add((team_id, severity, round(g, 4)))
    return out


def lead_qualification_rate(rule: Rule, rows: Rows, _funnel: Funnel, t: datetime) -> set[Verdict]:
    params = qualification.Params(**rule.params)
    end = t - timedelta(days=params.maturity_days)
    split = end - timedelta(days=params.window_days)
    start = split - timedelta(days=params.baseline_days)
    tally: dict[tuple[str, int], list[int]] = defaultdict(lambda: [0, 0])
    for lead in rows.leads:
        rep = rows.reps.get(lead.owner_id)
        if rep is None or not (start < lead.created_at <= end) or not _alive(lead, t):
            continue
        key = rep.team_id if params.group_by == "team" else (lead.lead_source or "(none)")
        cell = tally[(key, int(lead.created_at > split))]
        cell[0] += bool(lead.is_qualified or lead.is_converted)
        cell[1] += 1
    out = set()
    for key in {k[0] for k in tally if k[0] is not None}:
        (k, n), (k0, n0) = tally.get((key, 1), [0, 0]), tally.get((key, 0), [0, 0])
        if n < params.min_leads or n0 < params.min_baseline or k0 == 0:
            continue
        severity = grade((k / n) / (k0 / n0), tiers(rule, qualification.LeadQualificationRate.default_tiers), "below")
        if severity and binomtest(k, n, k0 / n0, alternative="less").pvalue < params.alpha:
            out.add((key, severity, round(k / n, 4)))
    return out


def lead_response_time(rule: Rule, rows: Rows, _funnel: Funnel, t: datetime) -> set[Verdict]:
    params = response.Params(**rule.params)
    end = t - timedelta(hours=params.sla_hours)
    start = end - timedelta(days=params.window_days)
    touches: dict[str, list[datetime]] = defaultdict(list)
    for a in rows.activities:
        if a.lead_id and a.occurred_at <= t and _alive(a, t):
            touches[a.lead_id].append(a.occurred_at)
    per_rep: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for lead in rows.leads:
        rep = rows.reps.get(lead.owner_id)
        if rep is None or not (start < lead.assigned_at <= end) or lead.created_at > t or not _alive(lead, t):
            continue
        sla = lead.assigned_at + timedelta(hours=params.sla_hours)
        per_rep[rep.id][0] += not any(lead.assigned_at <= x <= sla for x in touches.get(lead.id, ()))
        per_rep[rep.id][1] += 1
    per_team: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for rep_id, (k, n) in per_rep.items():
        if rows.reps[rep_id].team_id:
            per_team[rows.reps[rep_id].team_id][0] += k
            per_team[rows.reps[rep_id].team_id][1] += n
    total_k, total_n = sum(k for k, _ in per_rep.values()), sum(n for _, n in per_rep.values())
    out = set()
    for subject, (k, n) in [*per_rep.items(), *per_team.items()]:
        rest = total_n - n
        if n < params.min_leads or rest < params.min_leads:
            continue
        share, p0 = k / n, (total_k - k) / rest
        severity = grade(share, tiers(rule, response.LeadResponseTime.default_tiers), "above")
        if severity is None or share - p0 < params.min_excess:
            continue
        if binomtest(k, n, min(max(p0, 1e-9), 1 - 1e-9), alternative="greater").pvalue < params.alpha:
            out.add((subject, severity, round(share, 4)))
    return out


NAIVE: dict[str, Callable[[Rule, Rows, Funnel, datetime], set[Verdict]]] = {
    "deal_no_activity": deal_no_activity,
    "close_date_slipped": close_date_slipped,
    "stalled_stage": stalled_stage,
    "stage_conversion_drop": stage_conversion_drop,
    "lead_distribution": lead_distribution,
    "lead_qualification_rate": lead_qualification_rate,
    "lead_response_time": lead_response_time,
}


def naive_verdicts(
    conn: Connection, rules: Iterable[Rule], t: datetime, company: CompanySettings
) -> dict[str, set[Verdict]]:
    """Every funnel rule's verdicts, the naive way: one load of all rows, then Python loops."""
    chosen = [r for r in rules if r.kind in NAIVE and r.enabled]
    if not chosen:
        return {}
    rows = Rows.load(conn)
    funnel = Funnel(rows, t, company)
    return {r.id: NAIVE[r.kind](r, rows, funnel, t) for r in chosen}
