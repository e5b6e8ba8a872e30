"""HubSpot streams over owners, pipelines and the searchable CRM objects.

Owners and pipelines have no modification filter and are few: each run reads them whole
and yields them sorted by ``updatedAt``. Contacts, deals and engagements are read
incrementally (:mod:`connectors.hubspot_search`); their archived records, which search
never returns, come from the list endpoint with ``archived=true`` and are yielded first,
before any page can move the cursor, so a run that fails half-way cannot let a later run
skip them (see :meth:`SearchStream.archived_pages`).
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar

from connectors.base import Deleted, Item, Rejected, Stream, StreamContext
from connectors.hubspot_client import HubSpotClient
from connectors.hubspot_search import modified_since
from connectors.hubspot_values import day, flag, instant, text
from models.records import ActivityRecord, LeadRecord, OpportunityRecord, RepRecord, StageRecord

PAGE = 500  # items per page for the streams read whole
MODIFIED = "hs_lastmodifieddate"
QUALIFIED_STAGES = frozenset({"salesqualifiedlead", "opportunity", "customer"})
QUALIFIED_STATUSES = frozenset({"QUALIFIED", "OPEN_DEAL"})
CONVERTED_STAGES = frozenset({"opportunity", "customer"})
_OLDEST = datetime.min.replace(tzinfo=UTC)


class HubSpotStream(Stream):
    primary_key = "id"

    def __init__(self, client: HubSpotClient) -> None:
        self.client = client


def _replication_value(item: Item) -> datetime:
    value = item.replication_value if isinstance(item, Rejected | Deleted) else item.updated_at
    return value if isinstance(value, datetime) else _OLDEST


def _sorted_pages(items: list[Item]) -> Iterator[list[Item]]:
    items.sort(key=_replication_value)
    for start in range(0, len(items), PAGE):
        yield items[start : start + PAGE]


def _joined(*parts: Any) -> str | None:
    return " ".join(p.strip() for p in parts if isinstance(p, str) and p.strip()) or None


def _number(value: Any) -> Any:
    try:
        return float(value)
    except (TypeError, ValueError):
        return text(value)


# -- read whole ------------------------------------------------------------------------------
class RepsStream(HubSpotStream):
    """Owners; archived owners are people who left, kept (inactive) so their old deals stay theirs."""

    name = "reps"
    record_model = RepRecord
    replication_key = "updatedAt"

    def get_pages(self, context: StreamContext) -> Iterator[list[Item]]:  # noqa: ARG002 - always a full read
        items: list[Item] = []
        for archived in (False, True):
            after = None
            while True:
                owners, after = self.client.owners_page(after, archived=archived)
                items.extend(self.item(owner, archived=archived) for owner in owners)
                if after is None:
                    break
        yield from _sorted_pages(items)

    def item(self, raw: dict[str, Any], *, archived: bool) -> Item:
        teams = [t for t in raw.get("teams") or [] if isinstance(t, dict)]
        team = next((t for t in teams if t.get("primary")), teams[0] if teams else {})
        updated = instant(raw.get("updatedAt"))
        return self.build(
            raw,
            str(raw["id"]),
            updated if isinstance(updated, datetime) else None,
            email=text(raw.get("email")),
            name=_joined(raw.get("firstName"), raw.get("lastName")) or text(raw.get("email")) or f"Owner {raw['id']}",
            team_id=None if team.get("id") is None else str(team["id"]),
            team=text(team.get("name")),
            is_active=not (archived or raw.get("archived") is True),
            created_at=instant(raw.get("createdAt")),
            # HubSpot has no hire date: an owner is created when the person joins the portal.
            hired_on=day(raw.get("createdAt")),
            updated_at=updated,
        )


class StagesStream(HubSpotStream):
    """Deal stages of every deal pipeline; a deal's ``dealstage`` holds the stage id."""

    name = "stages"
    record_model = StageRecord
    replication_key = "updatedAt"

    def get_pages(self, context: StreamContext) -> Iterator[list[Item]]:  # noqa: ARG002 - always a full read
        items: list[Item] = []
        for pipeline in self.client.pipelines("deals"):
            items.extend(self.item(pipeline, stage) for stage in pipeline["stages"])
        yield from _sorted_pages(items)

    def item(self, pipeline: dict[str, Any], raw: dict[str, Any]) -> Item:
        meta = raw.get("metadata") if isinstance(raw.get("metadata"), dict) else {}
        probability = _number(meta.get("probability"))
        closed = flag(meta.get("isClosed"))
        updated = instant(raw.get("updatedAt"))
        return self.build(
            {"pipeline": pipeline.get("id"), **raw},
            str(raw["id"]),
            updated if isinstance(updated, datetime) else None,
            pipeline=str(pipeline["id"]),
            api_name=str(raw["id"]),
            label=text(raw.get("label")),
            sort_order=raw.get("displayOrder"),
            probability=probability,
            is_closed=closed,
            is_won=closed is True and probability == 1.0,
            is_active=not (raw.get("archived") is True or pipeline.get("archived") is True),
            updated_at=updated,
        )


# -- incremental -----------------------------------------------------------------------------
class SearchStream(HubSpotStream):
    """A searchable CRM object, read incrementally on its modification stamp."""

    object_type: ClassVar[str]
    modified_property: ClassVar[str] = MODIFIED
    properties: ClassVar[tuple[str, ...]]
    # Object types whose first associated record each record needs (fetched once per page).
    associations: ClassVar[tuple[str, ...]] = ()
    replication_key = MODIFIED

    def get_pages(self, context: StreamContext) -> Iterator[list[Item]]:
        yield from self.archived_pages(context)
        pages = modified_since(
            self.client, self.object_type, self.modified_property, list(self.properties), context.since
        )
        for page in pages:
            ids = [str(raw["id"]) for raw, _ in page]
            links = {to: self.client.first_associated(self.object_type, to, ids) for to in self.associations}
            yield [
                self.item(raw, modified, {to: found.get(i) for to, found in links.items()})
                for i, (raw, modified) in zip(ids, page, strict=True)
            ]

    def archived_pages(self, context: StreamContext) -> Iterator[list[Item]]:
        """Archived records as Deleted items, those archived since the lower bound (all on a full read).

        The list cannot filter by archive time, so every archived record is listed each run
        and the old ones dropped here. That is safe because these pages come before any page
        that moves the cursor: a stored cursor comes from a run whose archived pass had
        completed, and is never later than that run's start, so anything archived before
        ``since`` was already archived during that pass and listed by it. Clock skew between
        HubSpot and us is covered by the engine's lookback.
        """
        after = None
        while True:
            results, after = self.client.list_page(self.object_type, after, properties=["hs_object_id"], archived=True)
            page: list[Item] = []
            for raw in results:
                at = instant(raw.get("archivedAt"))
                at = at if isinstance(at, datetime) else context.started_at
                if context.since is None or at >= context.since:
                    page.append(Deleted(str(raw["id"]), deleted_at=at))
            if page:
                yield page
            if after is None:
                return

    def item(self, raw: dict[str, Any], modified: datetime | None, links: Mapping[str, str | None]) -> Item:
        record_id = str(raw[self.primary_key])
        if modified is None:
            got = raw["properties"].get(self.modified_property)
            return Rejected(
                record_id,
                raw,
                f"{self.modified_property}: not a readable instant (got {str(got)[:60]!r}) and no updatedAt, "
                "so the record cannot be placed in the incremental order; it is read again when HubSpot stamps it",
            )
        fields = self.map(record_id, raw["properties"], links)
        return self.build(raw, record_id, modified, updated_at=modified, **fields)

    @abstractmethod
    def map(self, record_id: str, props: dict[str, Any], links: Mapping[str, str | None]) -> dict[str, Any]:
        """The record's fields from its properties and first associated records."""


class LeadsStream(SearchStream):
    """Contacts. HubSpot has no lead object of its own in the sales funnel sense: contacts are the leads."""

    name = "leads"
    object_type = "contacts"
    modified_property = "lastmodifieddate"
    record_model = LeadRecord
    replication_key = "lastmodifieddate"
    associations = ("deals",)
    properties = (
        "firstname",
        "lastname",
        "company",
        "email",
        "hubspot_owner_id",
        "hs_lead_status",
        "lifecyclestage",
        "hs_analytics_source",
        "createdate",
        "hubspot_owner_assigneddate",
        "hs_lifecyclestage_opportunity_date",
    )

    def map(self, record_id: str, props: dict[str, Any], links: Mapping[str, str | None]) -> dict[str, Any]:  # noqa: ARG002
        stage, status = text(props.get("lifecyclestage")), text(props.get("hs_lead_status"))
        converted = stage in CONVERTED_STAGES
        return {
            "name": _joined(props.get("firstname"), props.get("lastname")),
            "company": text(props.get("company")),
            "email": text(props.get("email")),
            "owner_id": text(props.get("hubspot_owner_id")),
            "status": status or stage,
            "lead_source": text(props.get("hs_analytics_source")),
            "is_qualified": stage in QUALIFIED_STAGES or status in QUALIFIED_STATUSES,
            "is_converted": converted,
            "converted_at": instant(props.get("hs_lifecyclestage_opportunity_date")) if converted else None,
            # The deal a converted contact became: its first associated deal.
            "converted_opportunity_id": links["deals"] if converted else None,
            "created_at": instant(props.get("createdate")),
            "assigned_at": instant(props.get("hubspot_owner_assigneddate")),
        }


class OpportunitiesStream(SearchStream):
    name = "opportunities"
    object_type = "deals"
    record_model = OpportunityRecord
    properties = (
        "dealname",
        "hubspot_owner_id",
        "amount",
        "deal_currency_code",
        "pipeline",
        "dealstage",
        "hs_deal_stage_probability",
        "hs_is_closed",
        "hs_is_closed_won",
        "createdate",
        "closedate",
        "hs_v2_date_entered_current_stage",
        "notes_last_updated",
    )

    def __init__(self, client: HubSpotClient, *, default_currency: str, portal_id: str | None) -> None:
        super().__init__(client)
        self.default_currency = default_currency
        self.portal_id = portal_id

    def map(self, record_id: str, props: dict[str, Any], links: Mapping[str, str | None]) -> dict[str, Any]:  # noqa: ARG002
        closed = flag(props.get("hs_is_closed"))
        close = props.get("closedate")
        return {
            "name": text(props.get("dealname")),
            "owner_id": text(props.get("hubspot_owner_id")),
            "amount": text(props.get("amount")),
            # Single-currency portals leave deal_currency_code empty: amounts are in the company currency.
            "currency": text(props.get("deal_currency_code")) or self.default_currency,
            "pipeline": text(props.get("pipeline")),
            "stage": text(props.get("dealstage")),
            "probability": _number(props.get("hs_deal_stage_probability")),
            "is_closed": closed,
            "is_won": flag(props.get("hs_is_closed_won")),
            "created_at": instant(props.get("createdate")),
            "close_date": day(close),
            "closed_at": instant(close) if closed is True else None,
            "stage_entered_at": instant(props.get("hs_v2_date_entered_current_stage")),
            "last_activity_at": instant(props.get("notes_last_updated")),
            "crm_url": f"https://app.hubspot.com/contacts/{self.portal_id}/deal/{record_id}"
            if self.portal_id
            else None,
        }


class ActivityStream(SearchStream):
    """One engagement object; all of them feed the ``activities`` table, told apart by ``type``."""

    record_model = ActivityRecord
    associations = ("deals", "contacts")
    kind: ClassVar[str]
    subject_property: ClassVar[str]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "kind" in cls.__dict__:
            cls.target = "activities"
            cls.scope = {"type": (cls.kind,)}
            cls.properties = (cls.subject_property, "hs_timestamp", "hubspot_owner_id", "hs_createdate")

    def map(self, record_id: str, props: dict[str, Any], links: Mapping[str, str | None]) -> dict[str, Any]:  # noqa: ARG002
        created = instant(props.get("hs_createdate"))
        return {
            "type": self.kind,
            "subject": text(props.get(self.subject_property)),
            "rep_id": text(props.get("hubspot_owner_id")),
            "opportunity_id": links["deals"],
            "lead_id": links["contacts"],
            # hs_timestamp is when it happened; engagements logged without one happened when logged.
            "occurred_at": instant(props.get("hs_timestamp")) or created,
            "created_at": created,
        }


class CallsStream(ActivityStream):
    name = object_type = "calls"
    kind = "call"
    subject_property = "hs_call_title"


class EmailsStream(ActivityStream):
    name = object_type = "emails"
    kind = "email"
    subject_property = "hs_email_subject"


class MeetingsStream(ActivityStream):
    name = object_type = "meetings"
    kind = "meeting"
    subject_property = "hs_meeting_title"


class TasksStream(ActivityStream):
    name = object_type = "tasks"
    kind = "task"
    subject_property = "hs_task_subject"


class NotesStream(ActivityStream):
    name = object_type = "notes"
    kind = "note"
    subject_property = "hs_note_body"


ACTIVITY_STREAMS: tuple[type[ActivityStream], ...] = (
    CallsStream,
    EmailsStream,
    MeetingsStream,
    TasksStream,
    NotesStream,
)
