"""The company's people: teams (one CRM each), their managers and reps, and the CRM setup rows.

About 60 % of the teams work in Salesforce and 40 % in HubSpot, never fewer than one team
per CRM. Each team has a manager (title 'Sales Manager') and 5-8 reps at the preset scales.
A rep sells in one currency (about 70 % USD, then EUR, GBP and a few JPY) and is measured
against quotas in that currency. Some reps were hired during the two years of history,
never later than 150 days before the anchor, so every rep has the whole current quarter.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import ceil

from sandbox.company_catalog import (
    CURRENCIES,
    EMAIL_DOMAIN,
    FIRST_NAMES,
    HISTORY_DAYS,
    HUBSPOT,
    LAST_NAMES,
    PIPELINES,
    REP_TITLES,
    SALES_MANAGER,
    SALESFORCE,
    TEAM_REGIONS,
    TEAM_SEGMENTS,
    Rng,
    Window,
    business_moment,
    day_text,
    iso_ms,
    record_id,
    slug,
    workday,
)
from sandbox.company_sink import Sink

TEAM_SIZE = 7  # reps per team, at most; teams are split evenly
SALESFORCE_TEAM_SHARE = 0.6
LATE_HIRE_SHARE = 0.2
LATE_HIRE_MIN_TENURE_DAYS = 150


@dataclass(frozen=True)
class Person:
    crm: str
    id: str
    seq: int
    email: str
    first_name: str
    last_name: str
    title: str
    team_id: str
    manager_id: str | None
    hired_day: int
    currency: str

    def first_day(self, window: Window) -> int:
        """The first day this person can have records in the company's history."""
        return max(self.hired_day, window.start_day)


@dataclass(frozen=True)
class Team:
    crm: str
    id: str
    seq: int
    name: str
    manager: Person
    reps: tuple[Person, ...]


@dataclass(frozen=True)
class Org:
    teams: tuple[Team, ...]

    def reps(self, crm: str | None = None) -> list[Person]:
        return [r for t in self.teams if crm in (None, t.crm) for r in t.reps]


def build_org(
    reps: int, seed: int, window: Window, sink: Sink, *, salesforce_share: float = SALESFORCE_TEAM_SHARE
) -> Org:
    """Decide teams and people, and hand their rows (and the pipelines) to the sink."""
    rng = Rng(f"{seed}:org")
    n_teams = max(2, ceil(reps / TEAM_SIZE))
    n_sf = max(1, min(n_teams - 1, round(salesforce_share * n_teams)))
    crms = [SALESFORCE] * n_sf + [HUBSPOT] * (n_teams - n_sf)
    rng.shuffle(crms)
    names = [f"{r} {s}" for r in TEAM_REGIONS for s in TEAM_SEGMENTS]
    rng.shuffle(names)
    currencies = _currencies(reps, rng)
    emails: set[str] = set()
    teams = []
    for i, crm in enumerate(crms):
        size = reps // n_teams + (1 if i < reps % n_teams else 0)
        name = names[i % len(names)] + (f" {i // len(names) + 1}" if i >= len(names) else "")
        team_seq = sink.next_seq(crm, "teams")
        team_id = record_id(crm, "teams", team_seq)
        manager = _person(rng, sink, emails, crm, team_id, None, SALES_MANAGER, _veteran_day(rng, window), "USD")
        members = []
        for k in range(size):
            late = k > 0 and rng.random() < LATE_HIRE_SHARE
            hired = _late_day(rng, window) if late else _veteran_day(rng, window)
            title = "Account Executive" if late else rng.choices(tuple(REP_TITLES), (0.55, 0.35, 0.10))[0]
            members.append(_person(rng, sink, emails, crm, team_id, manager.id, title, hired, currencies.pop()))
        teams.append(Team(crm, team_id, team_seq, name, manager, tuple(members)))
    org = Org(tuple(teams))
    _write_rows(org, window, sink, rng)
    return org


def _currencies(reps: int, rng: Rng) -> list[str]:
    """Each rep's selling currency; every currency appears once the company has 4 reps."""
    counts = {c.code: max(1, round(c.share * reps)) if reps >= len(CURRENCIES) else 0 for c in CURRENCIES[1:]}
    codes = [code for code, n in counts.items() for _ in range(n)]
    codes += [CURRENCIES[0].code] * (reps - len(codes))
    rng.shuffle(codes)
    return codes


def _veteran_day(rng: Rng, window: Window) -> int:
    return window.anchor_day - rng.randint(HISTORY_DAYS + 30, HISTORY_DAYS + 2500)


def _late_day(rng: Rng, window: Window) -> int:
    return rng.randint(window.start_day + 30, window.anchor_day - LATE_HIRE_MIN_TENURE_DAYS)


def _person(
    rng: Rng,
    sink: Sink,
    emails: set[str],
    crm: str,
    team_id: str,
    manager_id: str | None,
    title: str,
    hired_day: int,
    currency: str,
) -> Person:
    first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
    local = f"{slug(first)}.{slug(last)}"
    email, n = f"{local}@{EMAIL_DOMAIN}", 1
    while email in emails:
        n += 1
        email = f"{local}{n}@{EMAIL_DOMAIN}"
    emails.add(email)
    seq = sink.next_seq(crm, "users")
    return Person(
        crm, record_id(crm, "users", seq), seq, email, first, last, title, team_id, manager_id, hired_day, currency
    )


def _write_rows(org: Org, window: Window, sink: Sink, rng: Rng) -> None:
    setup = iso_ms(business_moment(workday(window.start_day - 400), rng))
    for team in org.teams:
        stamp = iso_ms(business_moment(workday(team.manager.hired_day), rng))
        sink.add(
            "teams",
            {
                "crm": team.crm,
                "id": team.id,
                "seq": team.seq,
                "name": team.name,
                "parent_id": None,
                "created_at": stamp,
                "modified_at": stamp,
            },
        )
        for person in (team.manager, *team.reps):
            created = iso_ms(business_moment(workday(person.hired_day), rng))
            sink.add(
                "users",
                {
                    "crm": person.crm,
                    "id": person.id,
                    "seq": person.seq,
                    "email": person.email,
                    "first_name": person.first_name,
                    "last_name": person.last_name,
                    "title": person.title,
                    "team_id": person.team_id,
                    "manager_id": person.manager_id,
                    "is_active": 1,
                    "hired_on": day_text(person.hired_day),
                    "created_at": created,
                    "modified_at": created,
                    "deleted_at": None,
                },
            )
    order: dict[str, int] = {}
    for pipeline in PIPELINES:
        display = order[pipeline.crm] = order.get(pipeline.crm, -1) + 1
        sink.add(
            "pipelines",
            {
                "crm": pipeline.crm,
                "id": pipeline.id,
                "label": pipeline.label,
                "display_order": display,
                "created_at": setup,
                "modified_at": setup,
            },
        )
        for i, stage in enumerate(pipeline.stages):
            seq = sink.next_seq(pipeline.crm, "stages")
            sink.add(
                "stages",
                {
                    "crm": pipeline.crm,
                    "id": record_id(SALESFORCE, "stages", seq) if pipeline.crm == SALESFORCE else stage.key,
                    "seq": seq,
                    "pipeline_id": pipeline.id,
                    "label": stage.label,
                    "api_name": stage.key,
                    "display_order": i + 1 if pipeline.crm == SALESFORCE else i,
                    "probability": stage.probability,
                    "is_closed": int(stage.is_closed),
                    "is_won": int(stage.is_won),
                    "is_active": 1,
                    "created_at": setup,
                    "modified_at": setup,
                },
            )
