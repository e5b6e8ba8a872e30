"""The Salesforce streams: one SOQL query each, through REST pages or a Bulk API 2.0 job.

Every stream is one SOQL query run through ``queryAll`` ordered by its replication key
and Id, so changes and deletions (``IsDeleted = true`` rows) arrive in one ascending
sequence and the engine's cursor stays safe. Pages follow ``nextRecordsUrl`` (2,000
records each). A full read of a big object goes through :mod:`connectors.salesforce_bulk`.
"""

from __future__ import annotations

import logging
from abc import abstractmethod
from collections.abc import Iterator, Mapping
from datetime import date, datetime, timedelta
from typing import Any, ClassVar

from connectors.base import Deleted, Item, Stream, StreamContext
from connectors.salesforce_bulk import bulk_pages
from connectors.salesforce_client import QueryLocatorLost, SalesforceClient
from connectors.salesforce_values import from_csv, midnight, parse_datetime, related, soql_datetime
from models.records import (
    ActivityRecord,
    CloseDateChangeRecord,
    LeadRecord,
    OpportunityRecord,
    QuotaRecord,
    RepRecord,
    StageChangeRecord,
    StageRecord,
)

log = logging.getLogger("salespulse.connectors.salesforce")

MAX_QUERY_RESTARTS = 3


class SalesforceStream(Stream):
    sobject: ClassVar[str]
    fields: ClassVar[tuple[str, ...]]
    where: ClassVar[str] = ""
    deletable: ClassVar[bool] = True
    primary_key = "Id"
    replication_key = "SystemModstamp"

    def __init__(self, client: SalesforceClient, instance_url: str) -> None:
        self.client = client
        self.instance_url = instance_url.rstrip("/")

    def selected(self) -> list[str]:
        fields = list(self.fields)
        if self.deletable:
            fields.append("IsDeleted")
        if self.replication_key not in fields:
            fields.append(self.replication_key)
        return fields

    def soql(self, since: datetime | None) -> str:
        conditions = [self.where] if self.where else []
        if since is not None:
            conditions.append(f"{self.replication_key} >= {soql_datetime(since)}")
        where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
        return f"SELECT {', '.join(self.selected())} FROM {self.sobject}{where} ORDER BY {self.replication_key}, Id"

    def get_pages(self, context: StreamContext) -> Iterator[list[Item]]:
        if context.full and self._bulk_worthwhile():
            yield from self._bulk_pages(context)
        else:
            yield from self._rest_pages(context)

    def _bulk_worthwhile(self) -> bool:
        """Whether the object is big enough that a Bulk API 2.0 job beats REST pages (one
        COUNT() query finds out; a threshold of 0 never asks)."""
        threshold = self.client.settings.bulk_threshold
        if not threshold:
            return False
        where = f" WHERE {self.where}" if self.where else ""
        rows = self.client.count(f"SELECT COUNT() FROM {self.sobject}{where}", f"{self.name} count")
        if rows < threshold:
            return False
        log.info(
            "stream=%s reads %s through Bulk API 2.0: a full read of %d rows >= salesforce.bulk_threshold (%d)",
            self.name,
            self.sobject,
            rows,
            threshold,
        )
        return True

    def _bulk_pages(self, context: StreamContext) -> Iterator[list[Item]]:
        """The same records as REST pages, from CSV: each value typed as REST's JSON types it."""
        types = {path: self.client.field_type(self.sobject, path) for path in self.selected()}
        for rows in bulk_pages(self.client, self.soql(None), f"{self.name} bulk query"):
            yield [self._item(from_csv(row, types), context) for row in rows]

    def _rest_pages(self, context: StreamContext) -> Iterator[list[Item]]:
        """Pages of the query; if its cursor is lost mid-way, query again from the last value read.

        Re-reading from that value (inclusive) may repeat a few records; the engine's
        upserts make that harmless, while giving up would leave the stream behind.
        """
        since, restarts = context.since, 0
        while True:
            last: datetime | None = None
            try:
                for raw_page in self.client.pages(self.soql(since), f"{self.name} query"):
                    if raw_page:
                        last = parse_datetime(raw_page[-1].get(self.replication_key)) or last
                    yield [self._item(raw, context) for raw in raw_page]
            except QueryLocatorLost:
                if last is None or restarts >= MAX_QUERY_RESTARTS:
                    raise
                restarts += 1
                log.warning("stream=%s query cursor lost; querying again from %s", self.name, last.isoformat())
                since = last
            else:
                return

    def _item(self, raw: dict[str, Any], context: StreamContext) -> Item:
        external_id = str(raw.get(self.primary_key) or "")
        if raw.get("IsDeleted"):
            stamp = parse_datetime(raw.get(self.replication_key))
            return Deleted(external_id, deleted_at=stamp or context.started_at, replication_value=stamp)
        stamp_text = raw.get(self.replication_key)
        return self.build(raw, external_id, lambda: parse_datetime(stamp_text), updated_at=stamp_text, **self.map(raw))

    @abstractmethod
    def map(self, raw: dict[str, Any]) -> dict[str, Any]:
        """The record's fields from the raw Salesforce record."""

    def record_url(self, record_id: str) -> str:
        return f"{self.instance_url}/lightning/r/{self.sobject}/{record_id}/view"


class RepsStream(SalesforceStream):
    name = "reps"
    sobject = "User"
    record_model = RepRecord
    deletable = False
    fields = ("Id", "Email", "Name", "Title", "IsActive", "UserRoleId", "UserRole.Name", "ManagerId", "CreatedDate")
    # No standard User field holds a hire date; orgs that track it usually have this custom field.
    hire_date_field = "Hire_Date__c"

    def __init__(self, client: SalesforceClient, instance_url: str, *, has_hire_date: bool = False) -> None:
        super().__init__(client, instance_url)
        if has_hire_date:
            self.fields = (*self.fields, self.hire_date_field)  # type: ignore[misc]

    def map(self, raw: dict[str, Any]) -> dict[str, Any]:
        role = raw.get("UserRole") or {}
        created = parse_datetime(raw.get("CreatedDate"))
        return {
            "email": raw.get("Email"),
            "name": raw.get("Name"),
            "title": raw.get("Title"),
            "team_id": raw.get("UserRoleId"),
            "team": role.get("Name") if isinstance(role, Mapping) else None,
            "manager_id": raw.get("ManagerId"),
            "is_active": raw.get("IsActive"),
            "created_at": raw.get("CreatedDate"),
            "hired_on": raw.get(self.hire_date_field) or (created.date() if created else None),
        }


class StagesStream(SalesforceStream):
    name = "stages"
    sobject = "OpportunityStage"
    record_model = StageRecord
    deletable = False
    fields = ("Id", "MasterLabel", "ApiName", "SortOrder", "IsClosed", "IsWon", "DefaultProbability", "IsActive")

    def map(self, raw: dict[str, Any]) -> dict[str, Any]:
        probability = raw.get("DefaultProbability")
        return {
            "pipeline": "default",
            "api_name": raw.get("ApiName") or raw.get("MasterLabel"),
            "label": raw.get("MasterLabel"),
            "sort_order": raw.get("SortOrder"),
            "probability": probability / 100 if isinstance(probability, int | float) else probability,
            "is_closed": raw.get("IsClosed"),
            "is_won": raw.get("IsWon"),
            "is_active": raw.get("IsActive"),
        }


class LeadsStream(SalesforceStream):
    name = "leads"
    sobject = "Lead"
    record_model = LeadRecord
    fields = (
        "Id",
        "Name",
        "Company",
        "Email",
        "OwnerId",
        "Status",
        "LeadSource",
        "IsConverted",
        "ConvertedDate",
        "ConvertedOpportunityId",
        "CreatedDate",
    )
    # Salesforce has no standard "assigned at"; orgs that track it usually have this custom field.
    assigned_field = "Assigned_At__c"

    def __init__(self, client: SalesforceClient, instance_url: str, *, has_assigned_field: bool) -> None:
        super().__init__(client, instance_url)
        if has_assigned_field:
            self.fields = (*self.fields, self.assigned_field)  # type: ignore[misc]

    def map(self, raw: dict[str, Any]) -> dict[str, Any]:
        status = raw.get("Status")
        converted = raw.get("IsConverted")
        return {
            "name": raw.get("Name"),
            "company": raw.get("Company"),
            "email": raw.get("Email"),
            # A lead waiting in a queue (owner id 00G...) is nobody's yet.
            "owner_id": related(raw, "OwnerId", "005"),
            "status": status,
            "lead_source": raw.get("LeadSource"),
            "is_qualified": bool(converted) or status in ("Qualified", "Converted"),
            "is_converted": converted,
            "converted_at": midnight(raw.get("ConvertedDate")),
            "converted_opportunity_id": raw.get("ConvertedOpportunityId"),
            "created_at": raw.get("CreatedDate"),
            "assigned_at": raw.get(self.assigned_field) or raw.get("CreatedDate"),
        }


class OpportunitiesStream(SalesforceStream):
    name = "opportunities"
    sobject = "Opportunity"
    record_model = OpportunityRecord
    fields = (
        "Id",
        "Name",
        "OwnerId",
        "Amount",
        "CurrencyIsoCode",
        "StageName",
        "Probability",
        "IsClosed",
        "IsWon",
        "CloseDate",
        "CreatedDate",
        "LastActivityDate",
    )

    def __init__(self, client: SalesforceClient, instance_url: str, *, default_currency: str) -> None:
        super().__init__(client, instance_url)
        self.default_currency = default_currency

    def map(self, raw: dict[str, Any]) -> dict[str, Any]:
        probability = raw.get("Probability")
        return {
            "name": raw.get("Name"),
            "owner_id": raw.get("OwnerId"),
            "amount": raw.get("Amount"),
            # Single-currency orgs have no CurrencyIsoCode: amounts are in the org's currency.
            "currency": raw.get("CurrencyIsoCode") or self.default_currency,
            "pipeline": "default",
            "stage": raw.get("StageName"),
            "probability": probability / 100 if isinstance(probability, int | float) else probability,
            "is_closed": raw.get("IsClosed"),
            "is_won": raw.get("IsWon"),
            "created_at": raw.get("CreatedDate"),
            "close_date": raw.get("CloseDate"),
            "last_activity_at": midnight(raw.get("LastActivityDate")),
            "crm_url": self.record_url(str(raw.get("Id"))),
        }


class _FieldHistoryStream(SalesforceStream):
    """A deal's history rows are deleted with the deal. ``queryAll`` serves them ``IsDeleted``
    with their ``CreatedDate`` unchanged, so an incremental read never sees the deletion;
    the engine deletes a deleted deal's history itself (a --full read also sees these rows)."""

    sobject = "OpportunityFieldHistory"
    replication_key = "CreatedDate"
    fields = ("Id", "OpportunityId", "Field", "OldValue", "NewValue", "CreatedDate")

    def _item(self, raw: dict[str, Any], context: StreamContext) -> Item:
        item = super()._item(raw, context)
        if isinstance(item, Deleted):  # CreatedDate says when the change happened, not when it went
            return Deleted(item.external_id, context.started_at, item.replication_value)
        return item


class StageChangesStream(_FieldHistoryStream):
    name = "stage_changes"
    record_model = StageChangeRecord
    where = "Field = 'StageName'"

    def map(self, raw: dict[str, Any]) -> dict[str, Any]:
        return {
            "opportunity_id": raw.get("OpportunityId"),
            "from_stage": raw.get("OldValue"),
            "to_stage": raw.get("NewValue"),
            "changed_at": raw.get("CreatedDate"),
        }


class CloseDateChangesStream(_FieldHistoryStream):
    name = "close_date_changes"
    record_model = CloseDateChangeRecord
    where = "Field = 'CloseDate'"

    def map(self, raw: dict[str, Any]) -> dict[str, Any]:
        return {
            "opportunity_id": raw.get("OpportunityId"),
            "old_date": raw.get("OldValue"),
            "new_date": raw.get("NewValue"),
            "changed_at": raw.get("CreatedDate"),
        }


class TasksStream(SalesforceStream):
    name = "tasks"
    target = "activities"
    scope: ClassVar[Mapping[str, tuple[Any, ...]]] = {"type": ("call", "email", "task")}
    sobject = "Task"
    record_model = ActivityRecord
    fields = ("Id", "Subject", "TaskSubtype", "OwnerId", "WhatId", "WhoId", "ActivityDate", "CreatedDate")
    TYPES: ClassVar[dict[str, str]] = {"Call": "call", "Email": "email"}

    def __init__(self, client: SalesforceClient, instance_url: str, *, has_completed: bool) -> None:
        super().__init__(client, instance_url)
        if has_completed:
            self.fields = (*self.fields, "CompletedDateTime")  # type: ignore[misc]

    def map(self, raw: dict[str, Any]) -> dict[str, Any]:
        return {
            "type": self.TYPES.get(raw.get("TaskSubtype") or "", "task"),
            "subject": raw.get("Subject"),
            "rep_id": raw.get("OwnerId"),
            "opportunity_id": related(raw, "WhatId", "006"),
            "lead_id": related(raw, "WhoId", "00Q"),
            "occurred_at": raw.get("CompletedDateTime") or midnight(raw.get("ActivityDate")) or raw.get("CreatedDate"),
            "created_at": raw.get("CreatedDate"),
        }


class EventsStream(SalesforceStream):
    name = "events"
    target = "activities"
    scope: ClassVar[Mapping[str, tuple[Any, ...]]] = {"type": ("meeting",)}
    sobject = "Event"
    record_model = ActivityRecord
    fields = ("Id", "Subject", "OwnerId", "WhatId", "WhoId", "ActivityDateTime", "CreatedDate")

    def map(self, raw: dict[str, Any]) -> dict[str, Any]:
        return {
            "type": "meeting",
            "subject": raw.get("Subject"),
            "rep_id": raw.get("OwnerId"),
            "opportunity_id": related(raw, "WhatId", "006"),
            "lead_id": related(raw, "WhoId", "00Q"),
            "occurred_at": raw.get("ActivityDateTime") or raw.get("CreatedDate"),
            "created_at": raw.get("CreatedDate"),
        }


class QuotasStream(SalesforceStream):
    name = "quotas"
    sobject = "ForecastingQuota"
    record_model = QuotaRecord
    deletable = False
    fields = ("Id", "QuotaOwnerId", "StartDate", "QuotaAmount", "CurrencyIsoCode")

    def __init__(self, client: SalesforceClient, instance_url: str, *, default_currency: str) -> None:
        super().__init__(client, instance_url)
        self.default_currency = default_currency

    def map(self, raw: dict[str, Any]) -> dict[str, Any]:
        start = raw.get("StartDate")
        try:
            first = date.fromisoformat(start)
            # Forecast periods are quarters: the day before the same day three months on.
            month = first.month + 3
            end: Any = date(first.year + (month - 1) // 12, (month - 1) % 12 + 1, first.day) - timedelta(days=1)
        except (TypeError, ValueError):
            end = start
        return {
            "rep_id": raw.get("QuotaOwnerId"),
            "period_start": start,
            "period_end": end,
            "amount": raw.get("QuotaAmount"),
            "currency": raw.get("CurrencyIsoCode") or self.default_currency,
        }
