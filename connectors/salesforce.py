"""Salesforce, through simple-salesforce's REST query API.

Every stream is one SOQL query run through ``queryAll`` ordered by its replication key
and Id, so changes and deletions (``IsDeleted = true`` rows) arrive in one ascending
sequence and the engine's cursor stays safe. Pages follow ``nextRecordsUrl`` (2,000
records each); each HTTP call has a timeout and goes through the retry policy.

A full read (no cursor yet, or ``--full``) of an object with at least
``salesforce.bulk_threshold`` rows goes through a Bulk API 2.0 query job instead
(:mod:`connectors.salesforce_bulk`); its CSV rows become the same records. A run that
stops mid-way resumes from the committed cursor, incrementally, through REST.

Streams and their objects: reps (User + UserRole), stages (OpportunityStage), leads
(Lead), opportunities (Opportunity), stage_changes and close_date_changes
(OpportunityFieldHistory, which has no SystemModstamp: its cursor is CreatedDate),
tasks (Task: calls, emails, tasks) and events (Event: meetings), quotas
(ForecastingQuota, only where Collaborative Forecasts is on; quarterly periods).

Auth (first complete wins): a session id with the instance URL; username, password and
security token; or the OAuth 2.0 JWT bearer flow (username, client id, private key). A
private CA is trusted through ``ca_bundle`` with ``trust_env`` off, so a
``REQUESTS_CA_BUNDLE`` in the environment cannot override it.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, ClassVar

import jwt
import requests
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import (
    SalesforceAuthenticationFailed,
    SalesforceError,
    SalesforceExpiredSession,
    SalesforceMalformedRequest,
    SalesforceRefusedRequest,
)

from connectors import retry
from connectors.base import Connector, Deleted, Item, Stream, StreamContext
from connectors.errors import AuthError, StreamFailed, TransientError
from connectors.salesforce_bulk import bulk_pages
from models.errors import ConfigError
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
from models.settings import SalesforceSettings

log = logging.getLogger("salespulse.connectors.salesforce")

SOURCE = "salesforce"
MAX_QUERY_RESTARTS = 3
_DOMAIN_HINT = "and domain ('login' for production, 'test' for a sandbox org)"
PASSWORD_HINT = (
    "check the username, SALESPULSE_SALESFORCE__PASSWORD and SALESPULSE_SALESFORCE__SECURITY_TOKEN (a password "
    f"change or reset sends the user a new token) {_DOMAIN_HINT}"
)
JWT_HINT = (
    "check the username, client_id (the connected app's consumer key), that the private key belongs to the "
    f"certificate uploaded to the connected app, that the user is pre-authorized for the app {_DOMAIN_HINT}"
)
_INTEGER = re.compile(r"-?\d+\Z")
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?\Z")


def parse_datetime(value: Any) -> datetime | None:
    """Salesforce dateTime text ('2024-05-01T12:00:00.000+0000') to an aware datetime, or None."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _related(raw: dict[str, Any], field: str, prefix: str) -> str | None:
    """A polymorphic lookup (WhatId / WhoId) when it points at the object with this key prefix."""
    value = raw.get(field)
    return value if isinstance(value, str) and value.startswith(prefix) else None


def _soql_datetime(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _midnight(value: Any) -> Any:
    """A Salesforce date as the start of that day in UTC (dates carry no time)."""
    if isinstance(value, str) and len(value) == 10:
        try:
            return datetime.combine(date.fromisoformat(value), time(), tzinfo=UTC)
        except ValueError:
            return value
    return value


def _csv_value(type_: str, text: str) -> Any:
    """A Bulk API CSV cell as REST's JSON would give it: null, bool, number or text. A value
    that does not fit its type stays text, as REST serves dirty values, so the record is
    quarantined for the same reason either way."""
    if text == "":
        return None
    if type_ == "boolean":
        return {"true": True, "false": False}.get(text, text)
    if type_ == "int":
        return int(text) if _INTEGER.match(text) else text
    if type_ in ("double", "currency", "percent"):
        return float(text) if _NUMBER.match(text) else text
    return text


def _from_csv(row: Mapping[str, str], types: Mapping[str, str]) -> dict[str, Any]:
    """A CSV row as the REST record it stands for; 'UserRole.Name' columns become a nested
    record, or None when every column of that relationship is empty."""
    raw: dict[str, Any] = {}
    for path, type_ in types.items():
        value = _csv_value(type_, row.get(path, ""))
        relationship, _, name = path.rpartition(".")
        if not relationship:
            raw[path] = value
        elif value is not None:
            raw[relationship] = {**(raw.get(relationship) or {}), name: value}
        else:
            raw.setdefault(relationship, None)
    return raw


class QueryLocatorLost(StreamFailed):
    """The server-side cursor of a query is gone (expired, or consumed by a lost answer)."""


class SalesforceClient:
    """The SDK object plus the retry policy and timeout; re-creates itself on re-auth."""

    def __init__(
        self, settings: SalesforceSettings, policy: retry.RetryPolicy, session: requests.Session | None = None
    ) -> None:
        self.settings = settings
        self.policy = policy
        self.session = session or requests.Session()
        self.session.trust_env = False
        self.session.verify = str(settings.ca_bundle) if settings.ca_bundle else True
        self._described: dict[str, dict[str, dict[str, Any]]] = {}
        self.sf = self._login_with_retries()

    def _login_with_retries(self) -> Salesforce:
        """A login that meets a network blip or a busy login server waits and tries again, like any request."""
        return retry.call(self._login, self.policy, what="Salesforce login")

    def _login(self) -> Salesforce:
        s = self.settings
        # Plain dicts: the SDK's default OrderedDict parsing costs ~20 % of a full sync.
        common = {"session": self.session, "version": s.api_version, "object_pairs_hook": dict}
        if s.session_id and s.instance_url:
            return Salesforce(instance_url=s.instance_url, session_id=s.session_id.get_secret_value(), **common)
        if s.username and s.password and s.security_token:
            password, token = s.password.get_secret_value(), s.security_token.get_secret_value()
            return _log_in(
                lambda: Salesforce(
                    username=s.username, password=password, security_token=token, domain=s.domain, **common
                ),
                PASSWORD_HINT,
            )
        if s.username and s.client_id and (s.private_key or s.private_key_path):
            key = (
                {"privatekey": s.private_key.get_secret_value()}
                if s.private_key
                else {"privatekey_file": str(s.private_key_path)}
            )
            try:
                return _log_in(
                    lambda: Salesforce(username=s.username, consumer_key=s.client_id, domain=s.domain, **key, **common),
                    JWT_HINT,
                )
            except jwt.InvalidKeyError:
                raise ConfigError(
                    "not a PEM RSA private key (the JWT bearer flow signs with RS256)",
                    source="settings",
                    key="salesforce.private_key" if s.private_key else "salesforce.private_key_path",
                ) from None
            except (FileNotFoundError, PermissionError) as exc:
                raise ConfigError(
                    f"cannot read the private key file {s.private_key_path}: {exc.strerror}",
                    source="settings",
                    key="salesforce.private_key_path",
                ) from None
        raise ConfigError(
            "no complete Salesforce credentials: set instance_url + SALESPULSE_SALESFORCE__SESSION_ID, or username + "
            "SALESPULSE_SALESFORCE__PASSWORD + SALESPULSE_SALESFORCE__SECURITY_TOKEN, or username + client_id + a "
            "private key",
            source="settings",
            key="salesforce",
        )

    def reauth(self) -> None:
        if self.settings.session_id and self.settings.instance_url:
            raise AuthError(
                "Salesforce session expired or invalid; a bare session id cannot be renewed: set a fresh "
                "SALESPULSE_SALESFORCE__SESSION_ID (or configure username/password or JWT so salespulse can log in)"
            )
        self.sf = self._login_with_retries()

    def pages(self, soql: str, what: str) -> Iterator[list[dict[str, Any]]]:
        """Every page of a queryAll, each fetched with retries."""
        result = self.call(lambda: self.sf.query(soql, include_deleted=True, timeout=self.settings.timeout_s), what)
        yield result["records"]
        while not result.get("done", True):
            next_url = result["nextRecordsUrl"]
            result = self.call(
                lambda url=next_url: self.sf.query_more(
                    url, identifier_is_url=True, include_deleted=True, timeout=self.settings.timeout_s
                ),
                what,
            )
            yield result["records"]

    def count(self, soql: str, what: str) -> int:
        """The number of rows a ``SELECT COUNT() ...`` finds, deleted ones included."""
        return self.call(lambda: self.sf.query(soql, include_deleted=True, timeout=self.settings.timeout_s), what)[
            "totalSize"
        ]

    def describe_fields(self, sobject: str) -> dict[str, dict[str, Any]] | None:
        """An object's fields by name (their describe entries), or None when the org does not have it."""
        if sobject not in self._described:
            try:
                described = self.call(
                    lambda: self.sf.restful(f"sobjects/{sobject}/describe/", timeout=self.settings.timeout_s),
                    f"{sobject} describe",
                )
            except StreamFailed:
                return None
            self._described[sobject] = {f["name"]: f for f in described.get("fields", [])}
        return self._described[sobject]

    def field_type(self, sobject: str, path: str) -> str:
        """The describe type of a selected field, following one relationship ('UserRole.Name')."""
        fields = self.describe_fields(sobject) or {}
        if "." not in path:
            return str(fields.get(path, {}).get("type", "string"))
        relationship, name = path.split(".", 1)
        via = next((f for f in fields.values() if f.get("relationshipName") == relationship), {})
        target = (via.get("referenceTo") or [""])[0]
        return self.field_type(target, name) if target else "string"

    def call(self, fn: Callable[[], Any], what: str) -> Any:
        """An SDK call with its errors sorted by what the engine does about them, retried per the policy."""
        return retry.call(lambda: _translate(fn, what), self.policy, what=what, reauth=self.reauth)


def _log_in(connect: Callable[[], Salesforce], hint: str) -> Salesforce:
    try:
        return connect()
    except SalesforceAuthenticationFailed as exc:
        raise _login_refused(exc, hint) from None
    except (requests.ConnectionError, requests.Timeout) as exc:
        raise TransientError(f"Salesforce login: connection problem: {type(exc).__name__}") from None


def _login_refused(exc: SalesforceAuthenticationFailed, hint: str, **fields: object) -> AuthError | TransientError:
    # The SDK puts the HTTP status in place of the error code when the login server's answer
    # was not a SOAP fault or OAuth error (an HTML error page, a proxy's 503).
    if isinstance(exc.code, int) and exc.code >= 500:
        return TransientError(f"Salesforce login server answered {exc.code}", **fields)
    return AuthError(f"Salesforce refused the login ({exc.code}: {exc.auth_message[:200]}); {hint}", **fields)


def _translate(fn: Callable[[], Any], what: str) -> Any:
    """SDK and transport exceptions to ours, by what the engine should do."""
    try:
        return fn()
    except SalesforceAuthenticationFailed as exc:
        # With credentials, the SDK logs in again by itself on INVALID_SESSION_ID: that login was refused.
        raise _login_refused(exc, "check the Salesforce credentials", request=what) from None
    except SalesforceExpiredSession:
        raise AuthError("Salesforce session expired or invalid (INVALID_SESSION_ID)", request=what) from None
    except SalesforceRefusedRequest as exc:
        if "REQUEST_LIMIT_EXCEEDED" in str(exc.content):
            raise TransientError(
                "Salesforce API request limit exceeded (REQUEST_LIMIT_EXCEEDED)", request=what
            ) from None
        raise StreamFailed(
            f"Salesforce refused the request (403): {_error_code(exc)}; check the user's permissions", request=what
        ) from None
    except SalesforceMalformedRequest as exc:
        if "INVALID_QUERY_LOCATOR" in str(exc.content):
            raise QueryLocatorLost("Salesforce no longer knows the query's next page", request=what) from None
        raise StreamFailed(f"Salesforce rejected the query: {_error_code(exc)}", request=what) from None
    except SalesforceError as exc:
        if exc.status >= 500:
            raise TransientError(f"Salesforce answered {exc.status}", request=what) from None
        raise StreamFailed(f"Salesforce answered {exc.status}: {_error_code(exc)}", request=what) from None
    except (requests.ConnectionError, requests.Timeout) as exc:
        raise TransientError(f"Salesforce connection problem: {type(exc).__name__}", request=what) from None
    except ValueError as exc:  # a truncated or non-JSON body
        raise TransientError(f"Salesforce sent an unreadable answer: {exc.__class__.__name__}", request=what) from None


def _error_code(exc: SalesforceError) -> str:
    content = exc.content
    if isinstance(content, list) and content and isinstance(content[0], dict):
        return f"{content[0].get('errorCode')}: {str(content[0].get('message', ''))[:200]}"
    return str(content)[:200]


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
            conditions.append(f"{self.replication_key} >= {_soql_datetime(since)}")
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
            yield [self._item(_from_csv(row, types), context) for row in rows]

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
        external_id = str(raw.get("Id") or "")
        if raw.get("IsDeleted"):
            stamp = parse_datetime(raw.get(self.replication_key))
            return Deleted(external_id, deleted_at=stamp or context.started_at, replication_value=stamp)
        stamp_text = raw.get(self.replication_key)
        return self.build(raw, external_id, lambda: parse_datetime(stamp_text), updated_at=stamp_text, **self.map(raw))

    def map(self, raw: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def record_url(self, record_id: str) -> str:
        return f"{self.instance_url}/lightning/r/{self.sobject}/{record_id}/view"


class RepsStream(SalesforceStream):
    name = "reps"
    sobject = "User"
    record_model = RepRecord
    deletable = False
    fields = ("Id", "Email", "Name", "Title", "IsActive", "UserRoleId", "UserRole.Name", "ManagerId", "CreatedDate")

    def map(self, raw: dict[str, Any]) -> dict[str, Any]:
        role = raw.get("UserRole") or {}
        return {
            "email": raw.get("Email"),
            "name": raw.get("Name"),
            "title": raw.get("Title"),
            "team_id": raw.get("UserRoleId"),
            "team": role.get("Name") if isinstance(role, Mapping) else None,
            "manager_id": raw.get("ManagerId"),
            "is_active": raw.get("IsActive"),
            "created_at": raw.get("CreatedDate"),
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
            "owner_id": _related(raw, "OwnerId", "005"),
            "status": status,
            "lead_source": raw.get("LeadSource"),
            "is_qualified": bool(converted) or status in ("Qualified", "Converted"),
            "is_converted": converted,
            "converted_at": _midnight(raw.get("ConvertedDate")),
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
            "last_activity_at": _midnight(raw.get("LastActivityDate")),
            "crm_url": self.record_url(str(raw.get("Id"))),
        }


class _FieldHistoryStream(SalesforceStream):
    sobject = "OpportunityFieldHistory"
    replication_key = "CreatedDate"
    deletable = False
    fields = ("Id", "OpportunityId", "Field", "OldValue", "NewValue", "CreatedDate")


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
            "opportunity_id": _related(raw, "WhatId", "006"),
            "lead_id": _related(raw, "WhoId", "00Q"),
            "occurred_at": raw.get("CompletedDateTime") or _midnight(raw.get("ActivityDate")) or raw.get("CreatedDate"),
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
            "opportunity_id": _related(raw, "WhatId", "006"),
            "lead_id": _related(raw, "WhoId", "00Q"),
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


class SalesforceConnector(Connector):
    source = SOURCE

    def __init__(
        self,
        settings: SalesforceSettings,
        policy: retry.RetryPolicy,
        *,
        reporting_currency: str,
        session: requests.Session | None = None,
    ) -> None:
        self.client = SalesforceClient(settings, policy, session)
        self.reporting_currency = reporting_currency
        self.instance_url = settings.instance_url or f"https://{self.client.sf.sf_instance}"

    def streams(self) -> list[Stream]:
        c, url, cur = self.client, self.instance_url, self.reporting_currency
        lead_fields = c.describe_fields("Lead") or {}
        task_fields = c.describe_fields("Task") or {}
        streams: list[Stream] = [
            RepsStream(c, url),
            StagesStream(c, url),
            LeadsStream(c, url, has_assigned_field=LeadsStream.assigned_field in lead_fields),
            OpportunitiesStream(c, url, default_currency=cur),
            StageChangesStream(c, url),
            CloseDateChangesStream(c, url),
            TasksStream(c, url, has_completed="CompletedDateTime" in task_fields),
            EventsStream(c, url),
        ]
        if c.describe_fields("ForecastingQuota") is not None:
            streams.append(QuotasStream(c, url, default_currency=cur))
        else:
            log.info("ForecastingQuota is not available in this org; quotas come from the quota file only")
        return streams

    def close(self) -> None:
        self.client.session.close()
