"""From normalized records to warehouse rows: ids, references, currency, business checks.

A record that is well-formed can still be unusable: a deal owned by nobody we know, in a
stage the pipeline does not have, in a currency without a rate. Those become quarantine
reasons here (``Unusable``), because only the warehouse knows the reps and stages.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from operator import itemgetter
from typing import Any

from sqlalchemy import Connection, Table, select

from models.errors import SkippableError
from models.records import (
    ActivityRecord,
    CloseDateChangeRecord,
    ExchangeRateRecord,
    LeadRecord,
    OpportunityRecord,
    QuotaRecord,
    Record,
    RepRecord,
    StageChangeRecord,
    StageRecord,
)
from models.settings import CompanySettings
from models.tables import (
    activities,
    close_date_changes,
    exchange_rates,
    leads,
    opportunities,
    quotas,
    reps,
    stage_changes,
    stages,
)
from sync.currency import RateBook


class Unusable(SkippableError):
    """A valid record the warehouse cannot use; quarantined with this message."""


@dataclass(frozen=True)
class StageInfo:
    id: str
    pipeline: str
    probability: float


@dataclass
class Lookups:
    """What the checks need to know, loaded once per stream run (reps and stages are small)."""

    source: str
    company: CompanySettings
    rep_ids: set[str] = field(default_factory=set)
    stages: dict[str, StageInfo] = field(default_factory=dict)
    rates: RateBook | None = None

    def __post_init__(self) -> None:
        if self.rates is None:
            self.rates = RateBook(self.company)

    @classmethod
    def load(cls, conn: Connection, source: str, company: CompanySettings) -> Lookups:
        # Archived reps count: old deals of people who left are still theirs.
        rep_ids = set(conn.execute(select(reps.c.id).where(reps.c.source == source)).scalars())
        stage_map = {
            api_name: StageInfo(sid, pipeline, probability)
            for sid, api_name, pipeline, probability in conn.execute(
                select(stages.c.id, stages.c.api_name, stages.c.pipeline, stages.c.probability).where(
                    stages.c.source == source
                )
            )
        }
        return cls(source, company, rep_ids, stage_map, RateBook.load(conn, company))


@dataclass(frozen=True)
class StreamTable:
    """How one stream's records land in one table."""

    table: Table
    record_model: type[Record]  # what a quarantined record's stored payload is read back as
    refs: tuple[str, ...] = ()  # record fields holding CRM ids of other records
    conflict: tuple[str, ...] = ("id",)
    has_updated_at: bool = True
    deletable: bool = True
    # Columns salespulse keeps itself (a file's override, a precedence flag): the sync never writes them.
    derived: tuple[str, ...] = ()

    @property
    def can_be_stale(self) -> bool:
        """Whether the table marks a row whose newer CRM version is in quarantine."""
        return "quarantine_id" in self.table.c

    @property
    def key(self) -> Callable[[dict[str, Any]], Any]:
        """A row's conflict key, e.g. its id."""
        return itemgetter(*self.conflict)

    @property
    def update_columns(self) -> list[str]:
        keep = {"id", "source", *self.conflict, *self.derived}
        return [c.name for c in self.table.columns if c.name not in keep]


STREAM_TABLES: dict[str, StreamTable] = {
    "exchange_rates": StreamTable(exchange_rates, ExchangeRateRecord),
    "reps": StreamTable(
        reps,
        RepRecord,
        refs=("team_id", "manager_id"),
        derived=("hired_on", "hired_on_file", "lead_capacity", "leave_from", "leave_until"),
    ),
    "stages": StreamTable(stages, StageRecord, deletable=False),
    "leads": StreamTable(leads, LeadRecord, refs=("owner_id", "converted_opportunity_id")),
    "opportunities": StreamTable(
        opportunities,
        OpportunityRecord,
        refs=("owner_id", "lead_id"),
        derived=("close_date_pushes", "close_date_changed_at", "close_date_previous", "rollup_pipeline"),
    ),
    "stage_changes": StreamTable(stage_changes, StageChangeRecord, refs=("opportunity_id",), has_updated_at=False),
    "close_date_changes": StreamTable(
        close_date_changes, CloseDateChangeRecord, refs=("opportunity_id",), has_updated_at=False
    ),
    "activities": StreamTable(activities, ActivityRecord, refs=("rep_id", "opportunity_id", "lead_id")),
    "quotas": StreamTable(
        quotas,
        QuotaRecord,
        refs=("rep_id",),
        conflict=("source", "rep_id", "period_start", "period_end"),
        has_updated_at=False,
        deletable=False,
        derived=("is_effective",),
    ),
}


def warehouse_id(source: str, external_id: str) -> str:
    return f"{source}:{external_id}"


def to_row(spec: StreamTable, record: Record, lookups: Lookups, now: datetime) -> dict[str, Any]:
    """The row for ``record``, or Unusable with the reason it cannot be stored."""
    source = lookups.source
    row = dict(record.__dict__)  # the validated fields; much cheaper than model_dump()
    if spec.table is reps:  # the CRM's hire date; hired_on itself is derived (the quota file may override it)
        row["hired_on_crm"] = row.pop("hired_on")
    if spec.table is quotas:
        row.pop("updated_at")
    else:
        row["id"] = warehouse_id(source, record.external_id)
        if not spec.has_updated_at:
            row.pop("updated_at")
    row["source"] = source
    row["synced_at"] = now
    if spec.deletable:
        row["deleted_at"] = None
    if spec.can_be_stale:
        row["quarantine_id"] = None  # a valid version: the row is current again
    if spec.table is stage_changes:
        row["entered_at"] = None  # (re)derived by the sync at the end of the run, with the deal's other changes
    for ref in spec.refs:
        if row[ref] is not None:
            row[ref] = warehouse_id(source, row[ref])
    if spec.table is opportunities:
        _opportunity(row, lookups)
    elif spec.table is leads and row["owner_id"] is not None and row["owner_id"] not in lookups.rep_ids:
        crm_id = row["owner_id"].split(":", 1)[1]
        raise Unusable(
            f"owner {crm_id} is not a known {source} rep, so the lead would skew lead-distribution checks; "
            f"fix the owner in {source} (or check that the reps stream synced)"
        )
    elif spec.table is quotas:
        if row["rep_id"] not in lookups.rep_ids:
            raise Unusable(
                f"quota owner {record.rep_id} is not a known {source} rep, so the quota has no one to measure; "
                f"assign the quota to an active user in {source} (or check that the reps stream synced)"
            )
        row["amount_reporting"] = _reporting(row["amount"], row["currency"], row["period_start"], lookups)
    elif spec.table is exchange_rates:
        row["rate"] = None  # filled in reporting units once the whole stream is in (it may go through another row)
    return row


def _opportunity(row: dict[str, Any], lookups: Lookups) -> None:
    source = lookups.source
    if row["owner_id"] not in lookups.rep_ids:
        crm_id = row["owner_id"].split(":", 1)[1]
        raise Unusable(
            f"owner {crm_id} is not a known {source} rep, so the deal cannot be attributed; "
            f"fix the owner in {source} (or check that the reps stream synced)"
        )
    stage = lookups.stages.get(row["stage"])
    if stage is None:
        known = ", ".join(sorted(lookups.stages)[:12])
        raise Unusable(f"stage {row['stage']!r} is not a stage of any {source} pipeline (known: {known})")
    row["stage_id"] = stage.id
    if row["probability"] is None:
        row["probability"] = stage.probability
    row["amount_reporting"] = _reporting(row["amount"], row["currency"], row["close_date"], lookups)


def _reporting(amount: Any, currency: str, day: Any, lookups: Lookups) -> Any:
    """A dated rate applies by the record's date (a deal's close date, a quota's first day)."""
    assert lookups.rates is not None
    try:
        return lookups.rates.convert(amount, currency, lookups.source, day)
    except SkippableError as exc:
        raise Unusable(exc.message) from None
