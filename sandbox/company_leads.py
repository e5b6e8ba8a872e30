"""Leads: one stream per team, routed round-robin to the reps on the team at the time.

Round-robin routing is what lead-assignment rules do, and it keeps any window of recent
leads even across a team (per-rep counts differ by at most one), so only the planted
``uneven_leads`` team looks unfair. Some leads convert: the lead is linked to the deal it
became, and that deal is created in the rep's deal stream at the conversion moment.
"""

from __future__ import annotations

from bisect import bisect
from dataclasses import dataclass

from sandbox.company_catalog import (
    DAY_MS,
    HOUR_MS,
    LEAD_SOURCE_WEIGHTS,
    LEAD_SOURCES,
    MINUTE_MS,
    SALESFORCE,
    Rng,
    Window,
    business_moment,
    company_name,
    cumulative,
    growth_moment,
    in_business_hours,
    iso_ms,
    poisson_table,
    record_id,
    slug,
    workday,
)
from sandbox.company_org import Person, Team
from sandbox.company_sink import Sink
from sandbox.planted import LEAD_SKEW_DAYS, LEAD_SKEW_SHARE, Plan

FIRST_NAMES_LEADS = ("Alex", "Sam", "Jordan", "Taylor", "Morgan", "Casey", "Robin", "Jamie", "Avery", "Riley")
LAST_NAMES_LEADS = ("Baker", "Clark", "Evans", "Foster", "Gray", "Hughes", "Ito", "Meyer", "Park", "Young")
HUBSPOT_LEAD_STATUS = {
    "lead": ("NEW", "ATTEMPTED_TO_CONTACT", "UNQUALIFIED"),
    "marketingqualifiedlead": ("OPEN", "IN_PROGRESS"),
    "salesqualifiedlead": ("CONNECTED", "IN_PROGRESS"),
}

_SOURCE_WEIGHTS = cumulative(LEAD_SOURCE_WEIGHTS)
_YOUNG_WEIGHTS = cumulative((0.6, 0.1, 0.15, 0.15))
_OLD_WEIGHTS = cumulative((0.6, 0.2, 0.2))
_LIFECYCLE_WEIGHTS = cumulative((0.55, 0.30, 0.15))


@dataclass(frozen=True)
class Conversion:
    lead_id: str
    at_ms: int
    company: str


@dataclass(frozen=True)
class LeadStream:
    """What a team's lead stream needs to know besides the team."""

    count: int
    conversion_rate: float
    activities_per_lead: float
    deal_caps: dict[str, int]  # rep id -> most leads that may convert (the rep's deal count)
    first_deal_seq: dict[str, int]  # rep id -> seq of the rep's first deal (conversions take the first ones)


def write_team_leads(
    team: Team, stream: LeadStream, plan: Plan, window: Window, seed: int, sink: Sink
) -> dict[str, list[Conversion]]:
    """Write the team's leads and their activities; return each rep's conversions in order."""
    rng = Rng(f"{seed}:leads:{team.id}")
    first_day = min(r.first_day(window) for r in team.reps)
    moments = sorted(growth_moment(rng, window, first_day) for _ in range(stream.count))
    activity_table = poisson_table(stream.activities_per_lead)
    skewed = plan.uneven_team == team.id
    skew_from = window.end_ms + 1 - LEAD_SKEW_DAYS * DAY_MS
    favoured = [r for r in team.reps if r.id in plan.favoured]
    conversions: dict[str, list[Conversion]] = {r.id: [] for r in team.reps}
    turn, other_turn = rng.randrange(len(team.reps)), 0
    active: list[Person] = []
    for created in moments:
        day = created // DAY_MS
        if len(active) < len(team.reps):
            active = [r for r in team.reps if r.hired_day <= day] or [team.reps[0]]
        if skewed and created >= skew_from:
            others = [r for r in active if r not in favoured]
            if not others or rng.random() < LEAD_SKEW_SHARE:
                owner = favoured[rng.randrange(len(favoured))]
            else:
                owner, other_turn = others[other_turn % len(others)], other_turn + 1
        else:
            owner, turn = active[turn % len(active)], turn + 1
        _write_lead(rng, team.crm, owner, created, stream, conversions[owner.id], window, activity_table, sink)
    return conversions


def _write_lead(
    rng: Rng,
    crm: str,
    owner: Person,
    created: int,
    stream: LeadStream,
    converted: list[Conversion],
    window: Window,
    activity_table: list[float],
    sink: Sink,
) -> None:
    seq = sink.next_seq(crm, "leads")
    lead_id = record_id(crm, "leads", seq)
    first, last, company = rng.choice(FIRST_NAMES_LEADS), rng.choice(LAST_NAMES_LEADS), company_name(rng)
    source = rng.weighted(LEAD_SOURCES, _SOURCE_WEIGHTS)
    assigned = created + rng.randint(1, 120) * MINUTE_MS
    converted_at = None
    if len(converted) < stream.deal_caps[owner.id] and rng.random() < stream.conversion_rate:
        moment = business_moment(workday(assigned // DAY_MS + rng.randint(1, 30)), rng)
        if moment <= window.end_ms - HOUR_MS:
            converted_at = moment
    deal_id = None
    if converted_at is not None:
        deal_id = record_id(crm, "deals", stream.first_deal_seq[owner.id] + len(converted))
        converted.append(Conversion(lead_id, converted_at, company))
        modified = converted_at + rng.randint(1, 30) * MINUTE_MS
    else:
        modified = min(window.end_ms, assigned + int(rng.random() * 20 * DAY_MS))
    status, lifecycle, qualified = _status(rng, crm, converted_at is not None, (window.end_ms - created) / DAY_MS)
    sink.add(
        "leads",
        {
            "crm": crm,
            "id": lead_id,
            "seq": seq,
            "first_name": first,
            "last_name": last,
            "company": company,
            "email": f"{slug(first)}.{slug(last)}@{slug(company)}.example",
            "status": status,
            "lifecycle_stage": lifecycle,
            "is_qualified": int(qualified),
            "is_converted": int(converted_at is not None),
            "converted_at": None if converted_at is None else iso_ms(converted_at),
            "converted_deal_id": deal_id,
            "owner_id": owner.id,
            "assigned_at": iso_ms(assigned),
            "source": source,
            "created_at": iso_ms(created),
            "modified_at": iso_ms(modified),
            "deleted_at": None,
        },
    )
    worked_until = min(window.end_ms, converted_at or assigned + 45 * DAY_MS)
    for _ in range(bisect(activity_table, rng.random())):
        moment = in_business_hours(assigned + int(rng.random() * (worked_until - assigned)))
        sink.activity(rng, crm, owner.id, min(worked_until, max(assigned, moment)), None, lead_id)


def _status(rng: Rng, crm: str, converted: bool, age_days: float) -> tuple[str, str | None, bool]:
    """(status, lifecycle stage, is qualified) the way each CRM words a lead's progress."""
    if crm == SALESFORCE:
        if converted:
            status = "Converted"
        elif age_days < 7:
            status = "Open"
        elif age_days < 45:
            status = rng.weighted(("Working", "Open", "Qualified", "Unqualified"), _YOUNG_WEIGHTS)
        else:
            status = rng.weighted(("Unqualified", "Working", "Qualified"), _OLD_WEIGHTS)
        return status, None, status in ("Qualified", "Converted")
    if converted:
        return "OPEN_DEAL", "opportunity", True
    if age_days < 7:
        return "NEW", "lead", False
    lifecycle = rng.weighted(tuple(HUBSPOT_LEAD_STATUS), _LIFECYCLE_WEIGHTS)
    return rng.choice(HUBSPOT_LEAD_STATUS[lifecycle]), lifecycle, lifecycle == "salesqualifiedlead"
