"""Compact input data of a rule unit test, written into a throw-away warehouse.

A rule test describes a small company the way an admin thinks of it — reps with a team and a
hire date, quotas, deals with the path they took through the funnel in days relative to the
evaluation instant, leads, activities — and this module turns it into warehouse rows exactly
as a sync would leave them (ids ``<crm>:<id>``, amounts converted, ``stage_entered_at``,
``last_activity_at`` and the close-date push counts derived, the per-day stage rollups built),
so the rules run on it unchanged.

Times: a number is days relative to the test's ``at`` (``-3`` = three days before; fractions
allowed); a date or datetime is absolute (a naive datetime is read in the company time zone).
"""

from __future__ import annotations

import re
from collections import defaultdict
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, PlainValidator, model_validator
from sqlalchemy import Connection, insert

from models.settings import CompanySettings
from models.tables import activities, close_date_changes, leads, opportunities, quotas, reps, stage_changes, stages
from rules.instants import instant_of
from sync import close_dates, rollups

Crm = Literal["salesforce", "hubspot"]


def _moment(value: Any) -> float | datetime | date:
    """Days relative to the test's instant (a number within a century), or a date or datetime (ISO text too)."""
    expected = "expected days relative to 'at' (a number from -36500 to 36500) or a date / datetime"
    if isinstance(value, bool):
        raise ValueError(expected)  # noqa: TRY004 - pydantic wants ValueError to report it
    if isinstance(value, int | float):
        if not -36_500 <= value <= 36_500:
            raise ValueError(expected)
        return float(value)
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            text = value.strip()
            return datetime.fromisoformat(text) if "T" in text or " " in text else date.fromisoformat(text)
        except ValueError:
            pass
    raise ValueError(expected)


Moment = Annotated[float | datetime | date, PlainValidator(_moment)]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class RepIn(_In):
    name: str
    team: str | None = None
    email: str | None = None  # default: derived from the name
    hired_on: Moment | None = None
    # the quota file's lead capacity and leave (inclusive days; no end: still on leave)
    lead_capacity: float | None = Field(None, ge=0)
    leave_from: Moment | None = None
    leave_until: Moment | None = None
    active: bool = True
    manager: str | None = None  # another rep's name
    crm: Crm = "salesforce"
    deleted: Moment | None = None


class StageIn(_In):
    name: str  # what deals store (Salesforce StageName, HubSpot stage id)
    label: str | None = None  # default: the name
    pipeline: str = "default"
    probability: float = Field(0.5, ge=0, le=1)
    closed: bool = False
    won: bool = False


class QuotaIn(_In):
    rep: str
    start: Moment
    end: Moment  # inclusive
    amount: float = Field(ge=0)
    currency: str | None = None  # default: the reporting currency


class CloseDateChangeIn(_In):
    at: Moment
    to: Moment
    from_: Moment | None = Field(None, alias="from")  # default: the previous change's 'to' (first: the day of 'at')


class DealIn(_In):
    name: str
    owner: str
    amount: float | None = Field(None, ge=0)
    currency: str | None = None
    pipeline: str = "default"
    path: list[tuple[str, Moment]] = Field(min_length=1)  # [[stage, when], ...] in order
    created: Moment | None = None  # default: when it entered its first stage
    close_date: Moment | None = None  # default: the close (closed deals), else the last pushed date or at + 30
    close_date_changes: list[CloseDateChangeIn] = Field(default_factory=list)
    lead: str | None = None
    deleted: Moment | None = None
    count: int = Field(1, ge=1, le=10_000)  # that many copies, named 'name 1', 'name 2'...


class LeadIn(_In):
    name: str
    owner: str | None = None
    created: Moment
    assigned: Moment | None = None  # default: created (when it has an owner)
    status: str | None = None
    lead_source: str | None = None
    qualified: bool = False
    converted: bool = False
    crm: Crm | None = None  # default: the owner's
    deleted: Moment | None = None
    count: int = Field(1, ge=1, le=10_000)


class ActivityIn(_In):
    rep: str
    at: Moment
    type: Literal["call", "email", "meeting", "task", "note"] = "call"
    deal: str | None = None  # a deal's name (every copy, for a deal with count)
    lead: str | None = None
    deleted: Moment | None = None
    count: int = Field(1, ge=1, le=10_000)


class DataIn(_In):
    reps: list[RepIn] = Field(default_factory=list)
    stages: list[StageIn] = Field(default_factory=list)  # default: the standard Salesforce funnel
    quotas: list[QuotaIn] = Field(default_factory=list)
    deals: list[DealIn] = Field(default_factory=list)
    leads: list[LeadIn] = Field(default_factory=list)
    activities: list[ActivityIn] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_names(self) -> DataIn:
        stage_keys = [(s.pipeline, s.name) for s in self.stages]
        if len(set(stage_keys)) < len(stage_keys):
            raise ValueError("stages must be unique per pipeline")
        for what in ("reps", "deals", "leads"):
            names = [item.name for item in getattr(self, what)]
            twice = sorted({n for n in names if names.count(n) > 1})
            if twice:
                raise ValueError(f"{what} names must be unique (they are how the data refers to them): {twice}")
        return self

    def extended(self, more: DataIn) -> DataIn:
        """This data (a file's shared data) followed by a test's own."""
        return DataIn.model_validate(
            {name: [*getattr(self, name), *getattr(more, name)] for name in DataIn.model_fields}
        )


DEFAULT_STAGES = (
    StageIn(name="Prospecting", probability=0.1),
    StageIn(name="Qualification", probability=0.2),
    StageIn(name="Needs Analysis", probability=0.4),
    StageIn(name="Proposal", probability=0.6),
    StageIn(name="Negotiation", probability=0.8),
    StageIn(name="Closed Won", probability=1.0, closed=True, won=True),
    StageIn(name="Closed Lost", probability=0.0, closed=True),
)


class DataError(ValueError):
    """The data refers to something it does not define; ``path`` points into the data."""

    def __init__(self, message: str, path: tuple[str | int, ...]) -> None:
        super().__init__(message)
        self.path = path


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "x"


class _Clock:
    """Turns relative days and absolute dates into the warehouse's instants and dates."""

    def __init__(self, at: datetime, company: CompanySettings) -> None:
        self.at = at
        self.tz = ZoneInfo(company.timezone)
        self.timezone = company.timezone

    def instant(self, value: Moment) -> datetime:
        if isinstance(value, int | float):
            return self.at + timedelta(days=value)
        return instant_of(value, self.timezone)

    def day(self, value: Moment) -> date:
        if isinstance(value, datetime):
            return self.instant(value).astimezone(self.tz).date()
        if isinstance(value, date):
            return value
        return self.instant(value).astimezone(self.tz).date()


def write_data(conn: Connection, data: DataIn, at: datetime, company: CompanySettings) -> None:
    """Insert ``data`` as a sync would have left it; DataError names the entry that is wrong."""
    clock = _Clock(at, company)
    rates = {company.reporting_currency: Decimal(1), **company.fx_rates}

    def money(amount: float | None, currency: str | None, path: tuple[str | int, ...]) -> tuple[Any, str, Any]:
        code = currency or company.reporting_currency
        if code not in rates:
            raise DataError(f"currency {code} has no rate; add it to the test file's company.fx_rates", path)
        if amount is None:
            return None, code, None
        value = Decimal(str(amount))
        return value, code, (value * rates[code]).quantize(Decimal("0.01"))

    # reps
    rep_rows: dict[str, dict[str, Any]] = {}
    for number, rep in enumerate(data.reps, start=1):
        key = f"rep{number}-{_slug(rep.name)}"
        rep_rows[rep.name] = {
            "id": f"{rep.crm}:{key}",
            "source": rep.crm,
            "external_id": key,
            "email": (rep.email or f"{_slug(rep.name)}@example.com").lower(),
            "name": rep.name,
            "team_id": f"{rep.crm}:team-{_slug(rep.team)}" if rep.team else None,
            "team": rep.team,
            "manager_id": None,
            "is_active": rep.active,
            "hired_on": clock.day(rep.hired_on) if rep.hired_on is not None else None,
            "lead_capacity": rep.lead_capacity,
            "leave_from": clock.day(rep.leave_from) if rep.leave_from is not None else None,
            "leave_until": clock.day(rep.leave_until) if rep.leave_until is not None else None,
            "created_at": at - timedelta(days=3650),
            "updated_at": at - timedelta(days=1),
            "synced_at": at,
            "deleted_at": clock.instant(rep.deleted) if rep.deleted is not None else None,
        }
    for i, rep in enumerate(data.reps):
        if rep.manager is not None:
            rep_rows[rep.name]["manager_id"] = _rep(rep_rows, rep.manager, ("reps", i, "manager"))["id"]

    # stages: the default funnel in each CRM the data uses, unless the test gives its own
    crms = sorted({r["source"] for r in rep_rows.values()} or {"salesforce"})
    stage_rows: dict[tuple[str, str, str], dict[str, Any]] = {}
    declared = data.stages or DEFAULT_STAGES
    for crm in crms:
        for order, stage in enumerate(declared):
            stage_rows[(crm, stage.pipeline, stage.name)] = {
                "id": f"{crm}:stage{order}-{_slug(stage.pipeline)}-{_slug(stage.name)}",
                "source": crm,
                "external_id": f"stage{order}-{_slug(stage.pipeline)}-{_slug(stage.name)}",
                "pipeline": stage.pipeline,
                "api_name": stage.name,
                "label": stage.label or stage.name,
                "sort_order": order,
                "probability": stage.probability,
                "is_closed": stage.closed,
                "is_won": stage.won,
                "is_active": True,
                "updated_at": at - timedelta(days=3650),
                "synced_at": at,
            }

    # leads
    lead_rows: list[dict[str, Any]] = []
    lead_ids: dict[str, list[str]] = defaultdict(list)
    for i, lead in enumerate(data.leads):
        owner = _rep(rep_rows, lead.owner, ("leads", i, "owner")) if lead.owner else None
        crm = lead.crm or (owner["source"] if owner else "salesforce")
        created = clock.instant(lead.created)
        for copy in range(lead.count):
            name = lead.name if lead.count == 1 else f"{lead.name} {copy + 1}"
            key = f"lead{i + 1}.{copy + 1}-{_slug(name)}"
            lead_ids[lead.name].append(f"{crm}:{key}")
            lead_rows.append(
                {
                    "id": f"{crm}:{key}",
                    "source": crm,
                    "external_id": key,
                    "name": name,
                    "company": None,
                    "email": f"{key}@example.org",
                    "owner_id": owner["id"] if owner else None,
                    "status": lead.status or ("Qualified" if lead.qualified else "Open"),
                    "lead_source": lead.lead_source,
                    "is_qualified": lead.qualified,
                    "is_converted": lead.converted,
                    "converted_at": None,
                    "converted_opportunity_id": None,
                    "created_at": created,
                    "assigned_at": (clock.instant(lead.assigned) if lead.assigned is not None else created)
                    if owner
                    else None,
                    "updated_at": created,
                    "synced_at": at,
                    "deleted_at": clock.instant(lead.deleted) if lead.deleted is not None else None,
                }
            )

    # deals, their stage paths and close-date pushes
    deal_rows: list[dict[str, Any]] = []
    change_rows: list[dict[str, Any]] = []
    push_rows: list[dict[str, Any]] = []
    deal_ids: dict[str, list[str]] = defaultdict(list)
    for i, deal in enumerate(data.deals):
        where = ("deals", i)
        owner = _rep(rep_rows, deal.owner, (*where, "owner"))
        crm = owner["source"]
        steps: list[tuple[dict[str, Any], datetime]] = []
        for j, (stage_name, when) in enumerate(deal.path):
            funnel = {s["api_name"]: s for (c, p, _), s in stage_rows.items() if (c, p) == (crm, deal.pipeline)}
            by_label = {s["label"]: s for s in funnel.values()}
            stage = funnel.get(stage_name) or by_label.get(stage_name)
            if stage is None:
                known = sorted(by_label)
                raise DataError(
                    f"unknown stage '{stage_name}' in pipeline '{deal.pipeline}'; expected one of: {', '.join(known)}",
                    (*where, "path", j),
                )
            moment = clock.instant(when)
            if steps and moment < steps[-1][1]:
                raise DataError("the path must go forward in time", (*where, "path", j))
            steps.append((stage, moment))
        last_stage, entered = steps[-1]
        closed_at = entered if last_stage["is_closed"] else None
        amount, currency, reporting = money(deal.amount, deal.currency, (*where, "currency"))
        if deal.close_date is not None:
            close_date = clock.day(deal.close_date)
        elif closed_at is not None:
            close_date = closed_at.astimezone(clock.tz).date()
        elif deal.close_date_changes:
            close_date = clock.day(deal.close_date_changes[-1].to)
        else:
            close_date = clock.day(30)
        lead_id = None
        if deal.lead is not None:
            if deal.lead not in lead_ids:
                raise DataError(f"unknown lead '{deal.lead}'; name one from the leads", (*where, "lead"))
            lead_id = lead_ids[deal.lead][0]
        for copy in range(deal.count):
            name = deal.name if deal.count == 1 else f"{deal.name} {copy + 1}"
            key = f"deal{i + 1}.{copy + 1}-{_slug(name)}"
            deal_id = f"{crm}:{key}"
            deal_ids[deal.name].append(deal_id)
            deal_rows.append(
                {
                    "id": deal_id,
                    "source": crm,
                    "external_id": key,
                    "name": name,
                    "owner_id": owner["id"],
                    "amount": amount,
                    "currency": currency,
                    "amount_reporting": reporting,
                    "pipeline": deal.pipeline,
                    "stage": last_stage["api_name"],
                    "stage_id": last_stage["id"],
                    "probability": last_stage["probability"],
                    "is_closed": last_stage["is_closed"],
                    "is_won": last_stage["is_won"],
                    "created_at": clock.instant(deal.created) if deal.created is not None else steps[0][1],
                    "close_date": close_date,
                    "closed_at": closed_at,
                    "stage_entered_at": entered,
                    "last_activity_at": None,
                    "lead_id": lead_id,
                    "crm_url": f"https://crm.example.test/{crm}/{key}",
                    "updated_at": entered,
                    "synced_at": at,
                    "deleted_at": clock.instant(deal.deleted) if deal.deleted is not None else None,
                }
            )
            previous, previous_at = None, deal_rows[-1]["created_at"]
            for j, (stage, moment) in enumerate(steps):
                change_rows.append(
                    {
                        "id": f"{crm}:{key}-sc{j}",
                        "source": crm,
                        "external_id": f"{key}-sc{j}",
                        "opportunity_id": deal_id,
                        "from_stage": previous,
                        "to_stage": stage["api_name"],
                        "changed_at": moment,
                        "entered_at": previous_at,  # as the sync derives it
                        "synced_at": at,
                    }
                )
                previous, previous_at = stage["api_name"], moment
            previous: date | None = None
            for j, push in enumerate(deal.close_date_changes):
                # 'from' defaults to the previous change's 'to' (for the first: the day of the change)
                if push.from_ is not None:
                    old = clock.day(push.from_)
                else:
                    old = previous if previous is not None else clock.day(push.at)
                push_rows.append(
                    {
                        "id": f"{crm}:{key}-cd{j}",
                        "source": crm,
                        "external_id": f"{key}-cd{j}",
                        "opportunity_id": deal_id,
                        "old_date": old,
                        "new_date": clock.day(push.to),
                        "changed_at": clock.instant(push.at),
                        "synced_at": at,
                    }
                )
                previous = clock.day(push.to)

    # activities (and each deal's last activity, as the sync derives it)
    activity_rows: list[dict[str, Any]] = []
    last_activity: dict[str, datetime] = {}
    for i, act in enumerate(data.activities):
        where = ("activities", i)
        rep = _rep(rep_rows, act.rep, (*where, "rep"))
        if act.deal is not None and act.deal not in deal_ids:
            raise DataError(f"unknown deal '{act.deal}'; name one from the deals", (*where, "deal"))
        if act.lead is not None and act.lead not in lead_ids:
            raise DataError(f"unknown lead '{act.lead}'; name one from the leads", (*where, "lead"))
        moment = clock.instant(act.at)
        targets: list[str | None] = list(deal_ids[act.deal]) if act.deal is not None else [None]
        for target in targets:
            for copy in range(act.count):
                key = f"act-{i}-{len(activity_rows)}-{copy}"
                activity_rows.append(
                    {
                        "id": f"{rep['source']}:{key}",
                        "source": rep["source"],
                        "external_id": key,
                        "type": act.type,
                        "subject": f"{act.type} by {act.rep}",
                        "rep_id": rep["id"],
                        "opportunity_id": target,
                        "lead_id": lead_ids[act.lead][0] if act.lead is not None else None,
                        "occurred_at": moment,
                        "created_at": moment,
                        "updated_at": moment,
                        "synced_at": at,
                        "deleted_at": clock.instant(act.deleted) if act.deleted is not None else None,
                    }
                )
                if target is not None and act.deleted is None:
                    last_activity[target] = max(moment, last_activity.get(target, moment))
    for row in deal_rows:
        row["last_activity_at"] = last_activity.get(row["id"])

    # quotas
    quota_rows: list[dict[str, Any]] = []
    for i, quota in enumerate(data.quotas):
        rep = _rep(rep_rows, quota.rep, ("quotas", i, "rep"))
        amount, currency, reporting = money(quota.amount, quota.currency, ("quotas", i, "currency"))
        start, end = clock.day(quota.start), clock.day(quota.end)
        if end < start:
            raise DataError("end is before start", ("quotas", i, "end"))
        for j, other in enumerate(quota_rows):
            if other["rep_id"] == rep["id"] and other["period_start"] <= end and start <= other["period_end"]:
                raise DataError(f"overlaps quota #{j + 1} of the same rep; one quota per rep and period", ("quotas", i))
        quota_rows.append(
            {
                "source": "file",
                "external_id": None,
                "rep_id": rep["id"],
                "period_start": start,
                "period_end": end,
                "amount": amount,
                "currency": currency,
                "amount_reporting": reporting,
                "synced_at": at,
            }
        )

    for table, rows in (
        (reps, list(rep_rows.values())),
        (stages, list(stage_rows.values())),
        (leads, lead_rows),
        (opportunities, deal_rows),
        (stage_changes, change_rows),
        (close_date_changes, push_rows),
        (activities, activity_rows),
        (quotas, quota_rows),
    ):
        if rows:
            conn.execute(insert(table), rows)
    for source in {row["source"] for row in deal_rows}:
        rollups.rebuild(conn, source)
        close_dates.summarise(conn, opportunities.c.source == source)


def _rep(rows: dict[str, dict[str, Any]], name: str, path: tuple[str | int, ...]) -> dict[str, Any]:
    if name not in rows:
        raise DataError(f"unknown rep '{name}'; name one from the reps", path)
    return rows[name]
