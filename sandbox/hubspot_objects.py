"""How the fake HubSpot sees the sandbox store: which table backs each CRM object and
which SQL expression backs each HubSpot property.

Search filters, sorts and the property values the server returns are all computed in
SQL from these expressions (alias ``t`` is the object's row), so a filter means the same
thing as the value the client later reads. Dirty business values (amount, closedate,
names) are served exactly as stored; bookkeeping timestamps are already in HubSpot's
own ``2024-05-01T12:00:00.000Z`` form in the store.

Stage timing (``hs_v2_date_entered_<stageid>``) is derived from ``deal_history``: the
latest time the deal moved into that stage, or the deal's creation time for the stage
it was created in.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from http import HTTPStatus


class HubSpotError(Exception):
    """A request HubSpot would refuse; the server turns it into its error body."""

    def __init__(self, status: HTTPStatus, message: str, category: str | None = "VALIDATION_ERROR") -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.category = category


class Kind(StrEnum):
    """How a property's filter values compare (HubSpot property types, as far as they matter here)."""

    STRING = "string"
    NUMBER = "number"
    DATETIME = "datetime"
    BOOL = "bool"
    ID = "id"  # hs_object_id: numeric, so '1000' > '999'


@dataclass(frozen=True)
class Prop:
    sql: str
    kind: Kind = Kind.STRING

    @property
    def comparable(self) -> str:
        """The expression filters and sorts compare (numbers numerically)."""
        if self.kind is Kind.NUMBER:
            return f"CAST({self.sql} AS REAL)"
        if self.kind is Kind.ID:
            return f"CAST({self.sql} AS INTEGER)"
        return self.sql


@dataclass(frozen=True)
class ObjectSpec:
    name: str  # the URL name: deals, contacts, calls, ...
    singular: str  # as HubSpot words it in association errors
    table: str
    scope: str  # SQL condition selecting this object's rows (besides crm)
    props: dict[str, Prop]
    defaults: tuple[str, ...]  # returned when the request names no properties
    always: tuple[str, ...]  # returned whatever the request names
    searchable: tuple[str, ...]  # the properties a free-text ``query`` looks in

    def resolve(self, name: str, stage_ids: frozenset[str]) -> Prop | None:
        """The property behind a HubSpot property name, or None if this object has none."""
        prop = self.props.get(name)
        if prop is not None or self.name != "deals":
            return prop
        for prefix in ("hs_v2_date_entered_", "hs_date_entered_"):
            stage = name.removeprefix(prefix)
            if stage != name and stage in stage_ids:
                return Prop(_date_entered_sql(stage), Kind.DATETIME)
        return None


def _bool_sql(column: str) -> str:
    return f"CASE WHEN {column} THEN 'true' ELSE 'false' END"


def _sql_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _date_entered_sql(stage: str) -> str:
    stage_sql = _sql_literal(stage)
    # Without statistics SQLite prefers the changed_at index here: a scan of all history per deal.
    history = (
        "FROM deal_history h INDEXED BY ix_hist_deal WHERE h.crm = t.crm AND h.deal_id = t.id AND h.field = 'stage'"
    )
    first_stage = f"COALESCE((SELECT h.old_value {history} ORDER BY h.changed_at, h.seq LIMIT 1), t.stage_id)"
    return (
        f"COALESCE((SELECT MAX(h.changed_at) {history} AND h.new_value = {stage_sql}), "
        f"CASE WHEN {first_stage} = {stage_sql} THEN t.created_at END)"
    )


_DEAL_PROPS = {
    "dealname": Prop("t.name"),
    "amount": Prop("t.amount", Kind.NUMBER),
    "deal_currency_code": Prop("t.currency"),
    "dealstage": Prop("t.stage_id"),
    "pipeline": Prop("t.pipeline_id"),
    "closedate": Prop("t.close_date", Kind.DATETIME),
    "createdate": Prop("t.created_at", Kind.DATETIME),
    "hs_lastmodifieddate": Prop("t.modified_at", Kind.DATETIME),
    "hubspot_owner_id": Prop("t.owner_id"),
    "hs_is_closed": Prop(_bool_sql("t.is_closed"), Kind.BOOL),
    "hs_is_closed_won": Prop(_bool_sql("t.is_won"), Kind.BOOL),
    "hs_v2_date_entered_current_stage": Prop("t.stage_entered_at", Kind.DATETIME),
    "notes_last_updated": Prop("t.last_activity_at", Kind.DATETIME),
    "hs_last_sales_activity_timestamp": Prop("t.last_activity_at", Kind.DATETIME),
    "hs_object_id": Prop("t.id", Kind.ID),
}

_CONTACT_PROPS = {
    "firstname": Prop("t.first_name"),
    "lastname": Prop("t.last_name"),
    "email": Prop("t.email"),
    "company": Prop("t.company"),
    "lifecyclestage": Prop("t.lifecycle_stage"),
    "hs_lead_status": Prop("t.status"),
    "hubspot_owner_id": Prop("t.owner_id"),
    "hubspot_owner_assigneddate": Prop("t.assigned_at", Kind.DATETIME),
    "hs_analytics_source": Prop("t.source"),
    "hs_lifecyclestage_opportunity_date": Prop("t.converted_at", Kind.DATETIME),
    "createdate": Prop("t.created_at", Kind.DATETIME),
    "lastmodifieddate": Prop("t.modified_at", Kind.DATETIME),
    "hs_object_id": Prop("t.id", Kind.ID),
}


def _engagement(name: str, singular: str, subject_property: str) -> ObjectSpec:
    props = {
        "hs_timestamp": Prop("t.occurred_at", Kind.DATETIME),
        "hubspot_owner_id": Prop("t.owner_id"),
        subject_property: Prop("t.subject"),
        "hs_createdate": Prop("t.created_at", Kind.DATETIME),
        "hs_lastmodifieddate": Prop("t.modified_at", Kind.DATETIME),
        "hs_object_id": Prop("t.id", Kind.ID),
    }
    always = ("hs_createdate", "hs_lastmodifieddate", "hs_object_id")
    scope = f"t.type = '{singular}'"
    return ObjectSpec(name, singular, "activities", scope, props, always, always, (subject_property,))


OBJECTS: dict[str, ObjectSpec] = {
    spec.name: spec
    for spec in (
        ObjectSpec(
            "deals",
            "deal",
            "deals",
            "1=1",
            _DEAL_PROPS,
            (
                "amount",
                "closedate",
                "createdate",
                "dealname",
                "dealstage",
                "hs_lastmodifieddate",
                "hs_object_id",
                "pipeline",
            ),
            ("createdate", "hs_lastmodifieddate", "hs_object_id"),
            ("dealname",),
        ),
        ObjectSpec(
            "contacts",
            "contact",
            "leads",
            "1=1",
            _CONTACT_PROPS,
            ("createdate", "email", "firstname", "hs_object_id", "lastmodifieddate", "lastname"),
            ("createdate", "hs_object_id", "lastmodifieddate"),
            ("firstname", "lastname", "email", "company"),
        ),
        _engagement("calls", "call", "hs_call_title"),
        _engagement("emails", "email", "hs_email_subject"),
        _engagement("meetings", "meeting", "hs_meeting_title"),
        _engagement("tasks", "task", "hs_task_subject"),
        _engagement("notes", "note", "hs_note_body"),
    )
}


def object_spec(name: str) -> ObjectSpec:
    spec = OBJECTS.get(name)
    if spec is None:
        # Real body: status + message, no category (HubSpot answers 400 for an unknown type).
        raise HubSpotError(HTTPStatus.BAD_REQUEST, f"Unable to infer object type from: {name}", None)
    return spec
