"""The problems planted in the synthetic company, and their measurement for the ground truth.

Everything that is not planted is kept clearly healthy, so a rule that fires on the
generated data fires exactly where the ground truth says:

- every rep's closed-won amount this quarter is 75-130 % of quota pace, except the
  ``behind_quota`` reps (5-20 %) and the ``ahead_of_quota`` rep (250-320 %);
- open deals spend similar times in every stage, except in the ``stalled_stage`` (the
  fourth of the main pipeline), which has been clogging up for two years: its dwell times
  grow from normal to 12x, so its median days-in-stage is several times (3.5x or more in
  our seed sweeps) that of every other stage of the CRM holding at least MIN_OPEN_DEALS
  open deals, and no other stage reaches 3x;
- stage conversion is stable over time (last 90 days >= 0.75x the year before, in our
  sweeps), except the ``conversion_drop`` transition out of the first stage: a surge of
  poor prospects (30 % of the CRM's deals, created in the last 90 days, all lost in the
  first stage) brings its forward rate down to 0.4x or less. The surge, not fewer deals
  moving on, makes the drop: no later stage is starved of new deals, which would age its
  open deals and look like a second stall;
- leads are routed round-robin inside each team (per-rep counts differ by at most one),
  except the ``uneven_leads`` team, whose leads of the last 35 days go mostly to 1-2 reps;
- every open deal has an activity in the last 14 days, except the ``no_activity`` deals
  (last activity 24-60 days ago);
- a deal's close date moves later at most twice, except the ``pushed_close_dates`` deals
  (3-5 pushes).

``measure`` reads the numbers back from the store after generation (SQL, bounded memory),
so the ground truth states what the data says, not what the generator meant.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sandbox.company_catalog import (
    CRMS,
    DAY_MS,
    PRIOR_DAYS,
    RECENT_DAYS,
    Pipeline,
    Rng,
    Window,
    iso_ms,
    main_pipeline,
    pipelines_of,
)
from sandbox.company_org import Org, Person
from sandbox.store import Store

PROBLEMS = (
    "behind_quota",
    "ahead_of_quota",
    "stalled_stage",
    "conversion_drop",
    "uneven_leads",
    "no_activity",
    "pushed_close_dates",
)
STALLED_STAGE = 3  # the fourth open stage of the main pipeline (Proposal, decisionmakerboughtin)
STALL_FACTOR = 12.0  # the stalled stage's dwell times at the anchor, relative to normal (1x two years before)
JUNK_SHARE = 0.3  # of the deals of a rep whose CRM has the conversion drop
JUNK_DWELL = 0.7  # junk is disqualified a little faster: its first-stage dwell, relative to normal
LEAD_SKEW_DAYS = 35  # the uneven team's skewed routing covers at least the last 30 days
LEAD_SKEW_SHARE = 0.85  # of those leads go to the favoured reps
LEAD_WINDOW_DAYS = 30  # the window the ground truth counts leads in
MIN_OPEN_DEALS = 10  # a stage with fewer open deals is too small to compare medians with
ROLE_RATIOS = {"normal": (0.75, 1.30), "behind": (0.05, 0.20), "ahead": (2.50, 3.20)}  # of quota pace


@dataclass(frozen=True)
class Tuning:
    """How the plan bends one pipeline's simulation (not at all when nothing is planted in it)."""

    stalled: int | None = None  # the open stage whose dwell times are STALL_FACTOR times longer
    junk_share: float = 0.0  # of a rep's deals: a recent surge of prospects, all lost in the first stage


@dataclass(frozen=True)
class Plan:
    problems: frozenset[str]
    roles: dict[str, str] = field(default_factory=dict)  # rep id -> 'behind' | 'ahead'
    stalled: dict[str, int] = field(default_factory=dict)  # crm -> open stage index in its main pipeline
    dropped: dict[str, int] = field(default_factory=dict)  # crm -> from-stage index in its main pipeline
    uneven_team: str | None = None
    favoured: tuple[str, ...] = ()
    stale_budget: dict[str, int] = field(default_factory=dict)  # rep id -> planted no-activity deals
    pushed_budget: dict[str, int] = field(default_factory=dict)  # rep id -> planted pushed deals

    def role(self, rep_id: str) -> str:
        return self.roles.get(rep_id, "normal")

    def tuning(self, pipeline: Pipeline) -> Tuning:
        if pipeline.id != "default":
            return Tuning()
        return Tuning(self.stalled.get(pipeline.crm), JUNK_SHARE if pipeline.crm in self.dropped else 0.0)


def make_plan(org: Org, deals: int, seed: int, problems: frozenset[str]) -> Plan:
    """Choose who and what carries each problem. Every choice is drawn whether or not the
    problem is on, so switching one problem off leaves the others where they were."""
    rng = Rng(f"{seed}:plan")
    behind = {crm: rng.choice(org.reps(crm)) for crm in CRMS}
    ahead_crm = rng.choice(CRMS)
    candidates = [r for r in org.reps(ahead_crm) if r is not behind[ahead_crm]] or [
        r for r in org.reps() if r not in behind.values()
    ]
    ahead = rng.choice(candidates) if candidates else None
    stalled, dropped = {}, {}
    for crm in CRMS:
        stalled[crm] = STALLED_STAGE
        dropped[crm] = 0
    teams = [t for t in org.teams if len(t.reps) >= 3] or [t for t in org.teams if len(t.reps) >= 2] or list(org.teams)
    uneven = rng.choice(teams)
    favoured = tuple(r.id for r in rng.sample(uneven.reps, 2 if len(uneven.reps) >= 4 else 1))
    stale = _budgets(org, deals, rng)
    pushed = _budgets(org, deals, rng)

    roles = {}
    if "behind_quota" in problems:
        roles.update({r.id: "behind" for r in behind.values()})
    if "ahead_of_quota" in problems and ahead is not None:
        roles[ahead.id] = "ahead"
    on = problems.__contains__
    return Plan(
        problems,
        roles,
        stalled if on("stalled_stage") else {},
        dropped if on("conversion_drop") else {},
        uneven.id if on("uneven_leads") and len(uneven.reps) >= 2 else None,
        favoured if on("uneven_leads") and len(uneven.reps) >= 2 else (),
        stale if on("no_activity") else {},
        pushed if on("pushed_close_dates") else {},
    )


def _budgets(org: Org, deals: int, rng: Rng) -> dict[str, int]:
    """Spread about 1 % of the deals (4 to 400) over about a third of each CRM's reps."""
    total = min(400, max(4, deals // 100))
    all_reps = len(org.reps())
    budgets = {}
    for crm in CRMS:
        reps = org.reps(crm)
        share = max(2, round(total * len(reps) / all_reps))
        chosen = rng.sample(reps, max(1, round(0.3 * len(reps))))
        for rep in chosen:
            budgets[rep.id] = math.ceil(share / len(chosen))
    return budgets


# -- measurement -------------------------------------------------------------------------------------
def _ms(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp() * 1000)


def _rate(advanced: int, exits: int) -> float | None:
    return round(advanced / exits, 4) if exits else None


def measure(
    store: Store,
    plan: Plan,
    org: Org,
    window: Window,
    quotas: dict[str, int],
    stale_ids: list[tuple[str, str]],
    pushed_ids: list[tuple[str, str]],
) -> dict[str, list[dict[str, Any]]]:
    """The ground-truth entry of every planted problem that is on, read from the store."""
    conn = store.connect()
    found: dict[str, list[dict[str, Any]]] = {}
    reps = {r.id: r for r in org.reps()}
    for problem, role in (("behind_quota", "behind"), ("ahead_of_quota", "ahead")):
        if problem in plan.problems:
            ids = sorted(rid for rid, r in plan.roles.items() if r == role)
            found[problem] = [_attainment(conn, reps[rid], quotas[rid], window) for rid in ids]
    if "stalled_stage" in plan.problems:
        found["stalled_stage"] = [_stall(conn, crm, index, window) for crm, index in sorted(plan.stalled.items())]
    if "conversion_drop" in plan.problems:
        found["conversion_drop"] = [_drop(conn, crm, index, window) for crm, index in sorted(plan.dropped.items())]
    if "uneven_leads" in plan.problems:
        found["uneven_leads"] = [] if plan.uneven_team is None else [_leads(conn, plan, org, window)]
    if "no_activity" in plan.problems:
        found["no_activity"] = [_stale(conn, crm, deal_id, window) for crm, deal_id in sorted(stale_ids)]
    if "pushed_close_dates" in plan.problems:
        found["pushed_close_dates"] = [_pushes(conn, crm, deal_id) for crm, deal_id in sorted(pushed_ids)]
    return found


def _attainment(conn: Any, rep: Person, quota: int, window: Window) -> dict[str, Any]:
    won, count = conn.execute(
        "SELECT COALESCE(SUM(CAST(amount AS REAL)), 0), COUNT(*) FROM deals WHERE crm = ? AND owner_id = ? "
        "AND is_won = 1 AND deleted_at IS NULL AND closed_at BETWEEN ? AND ?",
        (rep.crm, rep.id, iso_ms(window.quarter_start_ms), iso_ms(window.end_ms)),
    ).fetchone()
    pace = quota * window.elapsed_days / window.quarter_days
    return {
        "crm": rep.crm,
        "rep_id": rep.id,
        "rep_email": rep.email,
        "team_id": rep.team_id,
        "currency": rep.currency,
        "period_start": window.quarter_start.isoformat(),
        "period_end": window.quarter_end.isoformat(),
        "quota": quota,
        "elapsed_days": window.elapsed_days,
        "quarter_days": window.quarter_days,
        "pace": round(pace, 2),
        "won_amount": round(won, 2),
        "won_deals": count,
        "pct_of_pace": round(100 * won / pace, 2),
    }


def stage_medians(conn: Any, crm: str, pipeline: Pipeline, window: Window) -> dict[str, tuple[float | None, int]]:
    """Median days in stage (as of the anchor's end of day) and count of open deals, per open stage."""
    result = {}
    for stage in pipeline.stages[: pipeline.open_count]:
        where = "crm = ? AND pipeline_id = ? AND stage_id = ? AND is_closed = 0 AND deleted_at IS NULL"
        args = (crm, pipeline.id, stage.key)
        n = conn.execute(f"SELECT COUNT(*) FROM deals WHERE {where}", args).fetchone()[0]
        if n == 0:
            result[stage.key] = (None, 0)
            continue
        middle = conn.execute(
            f"SELECT stage_entered_at FROM deals WHERE {where} ORDER BY stage_entered_at DESC LIMIT ? OFFSET ?",
            (*args, 2 - n % 2, (n - 1) // 2),
        ).fetchall()
        days = [(window.end_ms - _ms(r[0])) / DAY_MS for r in middle]
        result[stage.key] = (round(sum(days) / len(days), 2), n)
    return result


def _stall(conn: Any, crm: str, index: int, window: Window) -> dict[str, Any]:
    pipeline = main_pipeline(crm)
    medians = {}
    for p in pipelines_of(crm):
        medians.update(stage_medians(conn, crm, p, window))
    key = pipeline.stages[index].key
    others = {k: {"median_days": m, "open_deals": n} for k, (m, n) in sorted(medians.items()) if k != key}
    comparable = [o["median_days"] for o in others.values() if o["open_deals"] >= MIN_OPEN_DEALS]
    median, count = medians[key]
    return {
        "crm": crm,
        "pipeline_id": pipeline.id,
        "stage_id": key,
        "median_days_in_stage": median,
        "open_deals": count,
        "other_stages": others,
        "ratio_to_highest_other": round(median / max(comparable), 2) if median and comparable else None,
    }


def transition_counts(conn: Any, crm: str, from_key: str, to_key: str, window: Window) -> dict[str, dict[str, Any]]:
    """Exits from a stage (stage changes away from it) and how many went to ``to_key``, recent vs prior."""
    recent = iso_ms(window.recent_ms)
    prior = iso_ms(window.recent_ms - PRIOR_DAYS * DAY_MS)
    rows = conn.execute(
        "SELECT changed_at >= ?, new_value = ?, COUNT(*) FROM deal_history WHERE crm = ? AND field = 'stage' "
        "AND old_value = ? AND changed_at >= ? AND changed_at <= ? GROUP BY 1, 2",
        (recent, to_key, crm, from_key, prior, iso_ms(window.end_ms)),
    ).fetchall()
    counts = {(bool(r[0]), bool(r[1])): r[2] for r in rows}
    out = {}
    for name, is_recent, start, end in (
        ("recent", True, recent, iso_ms(window.end_ms)),
        ("prior", False, prior, iso_ms(window.recent_ms - 1)),
    ):
        exits = counts.get((is_recent, True), 0) + counts.get((is_recent, False), 0)
        advanced = counts.get((is_recent, True), 0)
        out[name] = {"from": start, "to": end, "exits": exits, "advanced": advanced, "rate": _rate(advanced, exits)}
    return out


def _drop(conn: Any, crm: str, index: int, window: Window) -> dict[str, Any]:
    pipeline = main_pipeline(crm)
    from_key, to_key = pipeline.stages[index].key, pipeline.stages[index + 1].key
    counts = transition_counts(conn, crm, from_key, to_key, window)
    return {
        "crm": crm,
        "pipeline_id": pipeline.id,
        "from_stage": from_key,
        "to_stage": to_key,
        "window_days": RECENT_DAYS,
        "prior_days": PRIOR_DAYS,
        **counts,
    }


def _leads(conn: Any, plan: Plan, org: Org, window: Window) -> dict[str, Any]:
    team = next(t for t in org.teams if t.id == plan.uneven_team)
    since = iso_ms(window.end_ms + 1 - LEAD_WINDOW_DAYS * DAY_MS)
    rows = conn.execute(
        "SELECT owner_id, COUNT(*) FROM leads WHERE crm = ? AND assigned_at >= ? AND deleted_at IS NULL "
        "GROUP BY owner_id",
        (team.crm, since),
    ).fetchall()
    counts = {r[0]: r[1] for r in rows}
    per_rep = {rep.id: counts.get(rep.id, 0) for rep in team.reps}
    total = sum(per_rep.values())
    return {
        "crm": team.crm,
        "team_id": team.id,
        "team_name": team.name,
        "window_days": LEAD_WINDOW_DAYS,
        "since": since,
        "leads_per_rep": dict(sorted(per_rep.items())),
        "favoured_rep_ids": sorted(plan.favoured),
        "favoured_share": round(sum(per_rep[r] for r in plan.favoured) / total, 4) if total else None,
    }


def _stale(conn: Any, crm: str, deal_id: str, window: Window) -> dict[str, Any]:
    owner, stage, last = conn.execute(
        "SELECT owner_id, stage_id, last_activity_at FROM deals WHERE crm = ? AND id = ?", (crm, deal_id)
    ).fetchone()
    return {
        "crm": crm,
        "deal_id": deal_id,
        "owner_id": owner,
        "stage_id": stage,
        "last_activity_at": last,
        "days_without_activity": round((window.end_ms - _ms(last)) / DAY_MS, 2),
    }


def _pushes(conn: Any, crm: str, deal_id: str) -> dict[str, Any]:
    owner = conn.execute("SELECT owner_id FROM deals WHERE crm = ? AND id = ?", (crm, deal_id)).fetchone()[0]
    # Sorted here: an ORDER BY would tempt SQLite into the changed_at index and a full scan.
    rows = sorted(
        conn.execute(
            "SELECT old_value, new_value, changed_at, seq FROM deal_history WHERE crm = ? AND deal_id = ? "
            "AND field = 'close_date'",
            (crm, deal_id),
        ),
        key=lambda r: (r[2], r[3]),
    )
    return {
        "crm": crm,
        "deal_id": deal_id,
        "owner_id": owner,
        "pushes": sum(r[1] > r[0] for r in rows),
        "close_dates": [rows[0][0], *(r[1] for r in rows)] if rows else [],
        "pushed_at": [r[2] for r in rows],
    }
