"""The performance kinds computed the naive way, for bench/rules_bench.py: load the rows, loop in Python.

This is what the evaluators avoid (every deal, stage change, activity and quota crosses into
Python), kept as a baseline to time them against and as an independent check of their
answers: the bench requires both to name the same subjects with the same severity and value.
Written from the formulas in the kinds' docstrings, not from their code. Only what the default
pack uses is implemented (no scope).
"""

from __future__ import annotations

import functools
import math
import statistics
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from scipy.stats import norm
from sqlalchemy import Connection, select

from models.settings import CompanySettings
from models.tables import activities, close_date_changes, opportunities, quotas, reps, stage_changes, stages
from rules.kinds import peer_outlier as peer
from rules.kinds import pipeline_coverage as coverage
from rules.kinds import quota_attainment as attainment
from rules.model import Rule
from rules.periods import Period, local_day, period_of
from rules.verdicts import grade, tiers
from rules.win_rates import StageRow, solve

Verdict = tuple[str, str, float]  # subject id, severity, value
Z80 = norm.ppf(0.9)


@dataclass
class Rows:
    """Every row the performance kinds read, loaded whole."""

    deals: list[Any]
    changes: dict[str, list[Any]]  # deal id -> its stage changes in time order
    pushes: dict[str, list[Any]]  # deal id -> its close-date changes in time order
    activities: list[Any]
    quotas: list[Any]
    reps: list[Any]
    stages: list[StageRow]

    @functools.cached_property
    def closed_stages(self) -> set[tuple[str, str, str]]:
        return {(s.source, s.pipeline, s.api_name) for s in self.stages if s.is_closed}

    @classmethod
    def load(cls, conn: Connection) -> Rows:
        changes: dict[str, list[Any]] = defaultdict(list)
        for c in conn.execute(select(stage_changes)):
            changes[c.opportunity_id].append(c)
        pushes: dict[str, list[Any]] = defaultdict(list)
        for c in conn.execute(select(close_date_changes)):
            pushes[c.opportunity_id].append(c)
        for history in (*changes.values(), *pushes.values()):
            history.sort(key=lambda c: (c.changed_at, c.id))
        a = activities.c
        return cls(
            list(conn.execute(select(opportunities))),
            changes,
            pushes,
            list(conn.execute(select(a.rep_id, a.occurred_at, a.deleted_at))),
            list(conn.execute(select(quotas))),
            list(conn.execute(select(reps))),
            [StageRow(s.source, s.pipeline, s.api_name, s.is_closed, s.is_won) for s in conn.execute(select(stages))],
        )


def _alive(row: Any, t: datetime) -> bool:
    return row.deleted_at is None or row.deleted_at > t


def _closed_at(deal: Any) -> datetime | None:
    return deal.stage_entered_at or deal.closed_at


def _closed_by(deal: Any, t: datetime) -> bool:
    moment = _closed_at(deal)
    return moment is None or moment <= t


@dataclass
class Tally:
    quota: float = 0.0
    expected: float = 0.0
    target: float = 0.0
    won: float = 0.0
    deals_won: int = 0
    open_n: int = 0
    open_amount: float = 0.0
    weighted: float = 0.0
    variance: float = 0.0
    members: list[str] = field(default_factory=list)

    def interval(self) -> tuple[float, float]:
        sd = math.sqrt(self.variance)
        projected = self.won + self.weighted
        low = max(self.won, projected - Z80 * sd)
        return low, max(low, min(self.won + self.open_amount, projected + Z80 * sd))


class Company:
    """Rep and team tallies for a period as of T, from the loaded rows."""

    def __init__(self, rows: Rows, t: datetime, company: CompanySettings) -> None:
        self.rows, self.t, self.company = rows, t, company
        self.today = local_day(t, company)
        self.reps = {r.id: r for r in rows.reps if r.deleted_at is None and r.is_active}

    def quota(self, first: date, last: date) -> dict[str, float]:
        lines = [q for q in self.rows.quotas if q.period_start <= last and q.period_end >= first]
        filed = {q.rep_id for q in lines if q.source == "file"}
        out: dict[str, float] = defaultdict(float)
        for q in lines:
            if q.rep_id in filed and q.source != "file":
                continue
            overlap = (min(last, q.period_end) - max(first, q.period_start)).days + 1
            out[q.rep_id] += float(q.amount_reporting) * overlap / ((q.period_end - q.period_start).days + 1)
        return out

    def win_rates(self, days: int, min_history: int) -> Callable[[str, str, str], float]:
        """Stage moves of the window counted in Python, then the same chain (rules/win_rates.py)."""
        since = self.t - timedelta(days=days)
        counted = {d.id for d in self.rows.deals if _alive(d, self.t) and d.quarantine_id is None}
        moves: dict[tuple[str, str, str], int] = defaultdict(int)
        for deal_id, history in self.rows.changes.items():
            if deal_id not in counted:
                continue
            for c in history:
                if c.from_stage is not None and since < c.changed_at <= self.t:
                    moves[(c.source, c.from_stage, c.to_stage)] += 1
        return solve(self.rows.stages, moves, min_history).rate

    def close_at(self, d: Any) -> date | None:
        """The deal's close date at T: the old date of its first close-date change after T, if modified since."""
        if (d.updated_at or d.synced_at) > self.t:
            later = [c for c in self.rows.pushes.get(d.id, []) if c.changed_at > self.t]
            if later and later[0].old_date is not None:
                return later[0].old_date
        return d.close_date

    def open_at_t(self) -> list[tuple[Any, str, date | None]]:
        """(deal, stage at T, close date at T) of every deal open at T."""
        out = []
        for d in self.rows.deals:
            if d.created_at > self.t or not _alive(d, self.t) or d.stage_entered_at is None:
                continue
            history = self.rows.changes.get(d.id, [])
            if d.stage_entered_at <= self.t:
                if d.is_closed:
                    continue
                stage = d.stage
            else:
                before = [c for c in history if c.changed_at <= self.t]
                stage = before[-1].to_stage if before else (history[0].from_stage if history else None) or d.stage
                if (d.source, d.pipeline, stage) in self.rows.closed_stages:
                    continue
            out.append((d, stage, self.close_at(d)))
        return out

    def tallies(
        self, period: Period, ramp_days: int, win_rate_days: int, min_history: int
    ) -> tuple[dict[str, Tally], dict[str, Tally]]:
        quota = self.quota(period.start, period.end)
        elapsed = period.elapsed(self.t)
        today = min(self.today, period.end)
        reps_out: dict[str, Tally] = {}
        for rep in self.reps.values():
            q = quota.get(rep.id)
            share_now, share_end = elapsed, 1.0
            if q and rep.hired_on is not None and ramp_days > 0 and (today - rep.hired_on).days < ramp_days:
                first = max(period.start, rep.hired_on)
                days = [first + timedelta(days=k) for k in range((period.end - first).days + 1)]
                w = [min(1.0, max(0.0, (d - rep.hired_on).days / ramp_days)) for d in days]
                share_now = sum(x for d, x in zip(days, w, strict=True) if d <= today) / len(days) if days else 0.0
                share_end = sum(w) / len(days) if days else 0.0
            reps_out[rep.id] = Tally(q or 0.0, (q or 0.0) * share_now, (q or 0.0) * share_end)
            reps_out[rep.id].quota = q  # type: ignore[assignment]
        for d in self.rows.deals:
            tally = reps_out.get(d.owner_id)
            if tally is None or not d.is_won or not _alive(d, self.t) or self.close_at(d) is None:
                continue
            if period.start <= self.close_at(d) <= min(period.end, self.today) and _closed_by(d, self.t):
                tally.won += float(d.amount_reporting or 0)
                tally.deals_won += 1
        rate = self.win_rates(win_rate_days, min_history)
        for d, stage, close in self.open_at_t():
            tally = reps_out.get(d.owner_id)
            if tally is None or close is None or not period.start <= close <= period.end:
                continue
            a, p = float(d.amount_reporting or 0), rate(d.source, d.pipeline, stage)
            tally.open_n += 1
            tally.open_amount += a
            tally.weighted += a * p
            tally.variance += a * a * p * (1 - p)
        teams: dict[str, Tally] = {}
        for rep_id, tally in reps_out.items():
            rep = self.reps[rep_id]
            if not tally.quota or rep.team_id is None:
                continue
            team = teams.setdefault(rep.team_id, Tally())
            for name in ("quota", "expected", "target", "won", "deals_won", "open_n", "open_amount", "weighted"):
                setattr(team, name, getattr(team, name) + getattr(tally, name))
            team.variance += tally.variance
        return reps_out, teams


def quota_attainment(rule: Rule, rows: Rows, t: datetime, company: CompanySettings) -> set[Verdict]:
    params = attainment.Params(**rule.params)
    levels = tiers(rule, attainment.DEFAULT_TIERS)
    world = Company(rows, t, company)
    period = period_of(params.period, t, company)
    reps_out, teams = world.tallies(period, params.ramp_days, params.win_rate_days, params.min_history)
    if period.elapsed(t) < params.min_elapsed:
        return set()  # the early bases (previous period, projection) are not part of the naive baseline
    out = set()
    subjects = [(k, v) for k, v in reps_out.items() if v.quota and v.quota > params.min_quota]
    subjects += list(teams.items()) if params.teams else []
    for subject, tally in subjects:
        if tally.expected <= 0:
            continue
        pace = tally.won / tally.expected
        severity = grade(pace, levels, "below")
        if severity is None and params.ahead_at is not None and pace >= params.ahead_at:
            severity = "warn"
        if severity:
            out.add((subject, severity, round(pace, 4)))
    return out


def pipeline_coverage(rule: Rule, rows: Rows, t: datetime, company: CompanySettings) -> set[Verdict]:
    params = coverage.Params(**rule.params)
    levels = tiers(rule, coverage.DEFAULT_TIERS)
    world = Company(rows, t, company)
    period = period_of(params.period, t, company)
    reps_out, teams = world.tallies(period, params.ramp_days, params.win_rate_days, params.min_history)
    elapsed = period.elapsed(t)
    out = set()
    for subject, tally in [*reps_out.items(), *(teams.items() if params.teams else ())]:
        remaining = max(0.0, tally.target - tally.won)
        if not tally.quota or remaining <= params.min_remaining:
            continue
        value = (tally.weighted if params.weighted else tally.open_amount) / remaining
        severity = grade(value, levels, "below")
        pace = tally.won / tally.expected if tally.expected > 0 else None
        behind = elapsed >= params.min_elapsed and pace is not None and pace < params.behind_pace
        high = tally.interval()[1]
        short = tally.open_n >= params.min_projection_deals and high / tally.target < params.projected_short
        if severity and (behind or short):
            out.add((subject, severity, round(value, 3)))
    return out


def peer_outlier(rule: Rule, rows: Rows, t: datetime, company: CompanySettings) -> set[Verdict]:
    params = peer.Params(**rule.params)
    levels = tiers(rule, peer.DEFAULT_TIERS)
    world = Company(rows, t, company)
    today = world.today
    if params.window_days:
        first = today - timedelta(days=params.window_days - 1)
    else:
        first = period_of(params.period, t, company).start
    start = Period("month", first, today, company.timezone).start_utc
    values: dict[str, list[float]] = defaultdict(lambda: [0.0, 0, 0])  # total, count, sample
    if params.metric == "activities":
        for a in rows.activities:
            if start <= a.occurred_at <= t and _alive(a, t):
                values[a.rep_id][0] += 1
                values[a.rep_id][2] += 1
    elif params.metric == "pipeline_created":
        for d in rows.deals:
            if start <= d.created_at <= t and _alive(d, t):
                values[d.owner_id][0] += float(d.amount_reporting or 0)
                values[d.owner_id][2] += 1
    else:
        for d in rows.deals:
            close = world.close_at(d)
            if not (d.is_closed and _alive(d, t) and close and first <= close <= today):
                continue
            if not _closed_by(d, t):
                continue
            v = values[d.owner_id]
            v[2] += 1
            if d.is_won:
                v[0] += float(d.amount_reporting or 0)
                v[1] += 1
    metric: dict[str, tuple[float, int]] = {}
    for rep, (total, won_n, sample) in values.items():
        if params.metric == "win_rate":
            metric[rep] = (won_n / sample, sample)
        elif params.metric == "avg_deal_size":
            if won_n:
                metric[rep] = (total / won_n, won_n)
        else:
            metric[rep] = (total, sample)
    if params.per_quota:
        quota = world.quota(first, today)
        metric = {r: (v / quota[r], n) for r, (v, n) in metric.items() if quota.get(r)}
    by_team: dict[str, list[str]] = defaultdict(list)
    for rep in world.reps.values():
        if rep.team_id is not None:
            by_team[rep.team_id].append(rep.id)
    out = set()
    for members in by_team.values():
        peers = [(r, metric[r]) for r in members if r in metric and metric[r][1] >= params.min_sample]
        if len(peers) < params.min_team_size:
            continue
        xs = [v for _, (v, _) in peers]
        median = statistics.median(xs)
        scale = max(1.4826 * statistics.median(abs(x - median) for x in xs), params.min_spread * abs(median))
        for rep, (x, n) in peers:
            s = max(scale, math.sqrt(median * (1 - median) / n)) if params.metric == "win_rate" else scale
            if s <= 0:
                continue
            z = (x - median) / s
            if (params.directions == "above" and z < 0) or (params.directions == "below" and z > 0):
                continue
            severity = grade(abs(z), levels, "above")
            if severity:
                out.add((rep, severity, round(z, 3)))
    return out


NAIVE: dict[str, Callable[[Rule, Rows, datetime, CompanySettings], set[Verdict]]] = {
    "quota_attainment": quota_attainment,
    "pipeline_coverage": pipeline_coverage,
    "peer_outlier": peer_outlier,
}


def naive_verdicts(
    conn: Connection, rules: Iterable[Rule], t: datetime, company: CompanySettings | None = None
) -> dict[str, set[Verdict]]:
    """Every performance rule's verdicts, the naive way: one load of all rows, then Python loops."""
    chosen = [r for r in rules if r.kind in NAIVE and r.enabled]
    if not chosen:
        return {}
    rows = Rows.load(conn)
    settings = company or CompanySettings()
    return {r.id: NAIVE[r.kind](r, rows, t, settings) for r in chosen}
