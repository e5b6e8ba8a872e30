"""The fake Salesforce REST API that simple-salesforce talks to, unchanged, over HTTPS.

It serves the sandbox store's ``crm='salesforce'`` rows as the sObjects the connector
reads, through the resources and behaviour of the REST API Developer Guide (API v59.0):

- "Versions" ``GET /services/data/`` (no authentication) and "Resources by Version"
  ``GET /services/data/vXX.X/``.
- "Query" / "QueryAll" / "Execute a SOQL Query" / "Retrieve the Remaining SOQL Query
  Results": ``GET .../query/?q=`` and ``.../queryAll/?q=`` (queryAll adds soft-deleted
  rows, ``IsDeleted: true``), then ``GET {nextRecordsUrl}`` = ``.../query/{locator}-{n}``.
  Pages hold 2,000 records, or the ``Sforce-Query-Options: batchSize=N`` header
  ("Query Options Header": 200 to 2,000). Each locator is a server-side cursor (its own
  SQLite connection and read transaction, rows fetched page by page, so a million-row
  result is never in memory). As the SOAP API Developer Guide "QueryLocator" says, a
  locator expires after 15 minutes idle and a user has at most 10 open (the oldest is
  released); it also ends when exhausted. Re-asking for the page just served (a retry
  after a lost answer) replays it; any other offset, or a gone locator, answers
  400 INVALID_QUERY_LOCATOR.
- "Describe Global" ``GET .../sobjects/`` and "sObject Describe"
  ``GET .../sobjects/{Object}/describe/`` (names, types, references).
- "Status Codes and Error Responses": errors are JSON arrays
  ``[{"message": ..., "errorCode": ...}]``: 401 INVALID_SESSION_ID, 403
  REQUEST_LIMIT_EXCEEDED (also past the daily limit; REST has no 429), 400
  MALFORMED_QUERY / INVALID_FIELD / INVALID_TYPE / INVALID_QUERY_LOCATOR, 404
  NOT_FOUND, 405 METHOD_NOT_ALLOWED, 500 UNKNOWN_EXCEPTION, 503 SERVER_UNAVAILABLE.
- "Limit Info Header": every answer carries ``Sforce-Limit-Info: api-usage=N/LIMIT``.
- Logging in (:mod:`sandbox.salesforce_login`): SOAP ``login()`` with username and
  password + security token of a user added by :meth:`FakeSalesforce.add_user`, and the
  OAuth 2.0 JWT bearer flow for a connected app registered by
  :meth:`FakeSalesforce.register_app`. Each login issues a new session id; the REST API
  accepts every issued session (and the one given at construction) until
  :meth:`FakeSalesforce.expire_session`.
- Bulk API 2.0 query jobs ``.../jobs/query[/{id}[/results]]``: see :mod:`sandbox.salesforce_bulk`.
  The fault kinds ``job_failed`` / ``job_aborted``, armed on ``POST .../jobs/query``, make
  the job that request creates end Failed / Aborted.

Values are served as Salesforce serialises them: dateTimes ``2024-05-01T12:00:00.000+0000``,
dates ``YYYY-MM-DD``, booleans, numbers as JSON numbers, nulls. Business values the
generator made dirty on purpose are served as stored: a non-numeric ``Amount`` arrives as
the stored string (the real API never does that, the connector must still survive it).

Object shapes follow the Object Reference. Where the store needs a choice: ``User.Name``
/ ``Lead.Name`` are "First Last"; ``Username`` is the e-mail; ``Opportunity.Probability``
and ``OpportunityStage.DefaultProbability`` are the stage's probability (a 0..1 fraction in
the store) as a percent; ``Opportunity.LeadSource`` comes from the converted lead;
``Task.Status`` is 'Completed' (the store logs done activities); the lead assignment time
is the custom field ``Lead.Assigned_At__c``; ``OpportunityFieldHistory`` has no
SystemModstamp (its cursor is CreatedDate) and counts as deleted with its opportunity.
User, UserRole, OpportunityStage and ForecastingQuota have no IsDeleted (users are
deactivated, not deleted). A store with Salesforce currencies is a multi-currency org:
``CurrencyType`` and ``DatedConversionRate`` (no IsDeleted) serve them; without, both
answer INVALID_TYPE as in a single-currency org. Date literals (TODAY...) use the store clock's UTC date.
"""

from __future__ import annotations

import itertools
import re
import secrets
import ssl
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qs

from sandbox.faults import Fault, FaultKind
from sandbox.httpbase import FakeServer, Request, Response
from sandbox.salesforce_bulk import BulkError, QueryJobs, sf_number
from sandbox.salesforce_login import (
    INVALID_LOGIN,
    JWT_BEARER,
    ApiUser,
    ConnectedApp,
    check_assertion,
    load_public_key,
    oauth_error,
    read_soap_login,
    soap_client_fault,
    soap_fault,
    soap_login_response,
    token_response,
)
from sandbox.soql import Column, Compiled, Relationship, SField, SObject, SoqlError, translate
from sandbox.store import Store

# -- the objects, over the store's tables ---------------------------------------------

_SF = "{t}.crm = 'salesforce'"
_DELETED = "{t}.deleted_at IS NOT NULL"
_NAME = "TRIM(COALESCE({t}.first_name, '') || ' ' || COALESCE({t}.last_name, ''))"


def _stamps(created: str = "{t}.created_at") -> tuple[SField, ...]:
    return (
        SField("CreatedDate", "datetime", created),
        SField("LastModifiedDate", "datetime", "{t}.modified_at"),
        SField("SystemModstamp", "datetime", "{t}.modified_at"),
    )


def _ref(name: str, column: str, target: str) -> SField:
    return SField(name, "reference", "{t}." + column, reference_to=target)


def _money(name: str, column: str) -> SField:
    # Stored as TEXT (possibly dirty): compare numerically, serve as stored.
    return SField(name, "currency", "{t}." + column, compare_sql=f"CAST({{t}}.{column} AS REAL)")


_OWNER = (Relationship("Owner", "User", "OwnerId"),)

OBJECTS: tuple[SObject, ...] = (
    SObject(
        "User",
        "005",
        "users",
        _SF,
        (
            SField("Id", "id", "{t}.id"),
            SField("Username", "string", "{t}.email"),
            SField("Email", "email", "{t}.email"),
            SField("FirstName", "string", "{t}.first_name"),
            SField("LastName", "string", "{t}.last_name"),
            SField("Name", "string", _NAME),
            SField("Title", "string", "{t}.title"),
            SField("IsActive", "boolean", "{t}.is_active"),
            _ref("UserRoleId", "team_id", "UserRole"),
            _ref("ManagerId", "manager_id", "User"),
            # A custom field, as orgs that track hire dates have one (the standard User has none).
            SField("Hire_Date__c", "date", "{t}.hired_on"),
            *_stamps(),
        ),
        (Relationship("UserRole", "UserRole", "UserRoleId"), Relationship("Manager", "User", "ManagerId")),
    ),
    SObject(
        "UserRole",
        "00E",
        "teams",
        _SF,
        (
            SField("Id", "id", "{t}.id"),
            SField("Name", "string", "{t}.name"),
            _ref("ParentRoleId", "parent_id", "UserRole"),
            *_stamps()[1:],
        ),
        (Relationship("ParentRole", "UserRole", "ParentRoleId"),),
    ),
    SObject(
        "Lead",
        "00Q",
        "leads",
        _SF,
        (
            SField("Id", "id", "{t}.id"),
            SField("FirstName", "string", "{t}.first_name"),
            SField("LastName", "string", "{t}.last_name"),
            SField("Name", "string", _NAME),
            SField("Company", "string", "{t}.company"),
            SField("Email", "email", "{t}.email"),
            SField("Status", "picklist", "{t}.status"),
            SField("LeadSource", "picklist", "{t}.source"),
            SField("IsConverted", "boolean", "{t}.is_converted"),
            SField("ConvertedDate", "date", "substr({t}.converted_at, 1, 10)"),
            _ref("ConvertedOpportunityId", "converted_deal_id", "Opportunity"),
            _ref("OwnerId", "owner_id", "User"),
            SField("Assigned_At__c", "datetime", "{t}.assigned_at"),
            *_stamps(),
        ),
        (*_OWNER, Relationship("ConvertedOpportunity", "Opportunity", "ConvertedOpportunityId")),
        deleted=_DELETED,
    ),
    SObject(
        "Opportunity",
        "006",
        "deals",
        _SF,
        (
            SField("Id", "id", "{t}.id"),
            SField("Name", "string", "{t}.name"),
            _ref("OwnerId", "owner_id", "User"),
            _money("Amount", "amount"),
            SField("CurrencyIsoCode", "picklist", "{t}.currency"),
            SField("StageName", "picklist", "{t}.stage_id"),
            SField(
                "Probability",
                "percent",
                "(SELECT ROUND(s.probability * 100, 2) FROM stages AS s"
                " WHERE s.crm = 'salesforce' AND s.api_name = {t}.stage_id)",
            ),
            SField("IsClosed", "boolean", "{t}.is_closed"),
            SField("IsWon", "boolean", "{t}.is_won"),
            SField("CloseDate", "date", "{t}.close_date"),
            SField(
                "LeadSource",
                "picklist",
                "(SELECT l.source FROM leads AS l WHERE l.crm = 'salesforce' AND l.id = {t}.lead_id)",
            ),
            SField("LastActivityDate", "date", "substr({t}.last_activity_at, 1, 10)"),
            *_stamps(),
        ),
        _OWNER,
        deleted=_DELETED,
    ),
    SObject(
        "OpportunityFieldHistory",
        "017",
        "deal_history",
        _SF,
        (
            SField("Id", "id", "{t}.id"),
            _ref("OpportunityId", "deal_id", "Opportunity"),
            SField(
                "Field",
                "picklist",
                "CASE {t}.field WHEN 'stage' THEN 'StageName' WHEN 'close_date' THEN 'CloseDate'"
                " WHEN 'amount' THEN 'Amount' ELSE {t}.field END",
            ),
            SField("OldValue", "anyType", "{t}.old_value"),
            SField("NewValue", "anyType", "{t}.new_value"),
            SField("CreatedDate", "datetime", "{t}.changed_at"),
        ),
        (Relationship("Opportunity", "Opportunity", "OpportunityId"),),
        deleted="EXISTS (SELECT 1 FROM deals AS d WHERE d.crm = 'salesforce' AND d.id = {t}.deal_id"
        " AND d.deleted_at IS NOT NULL)",
    ),
    SObject(
        "OpportunityStage",
        "01J",
        "stages",
        _SF,
        (
            SField("Id", "id", "{t}.id"),
            SField("MasterLabel", "string", "{t}.label"),
            SField("ApiName", "string", "{t}.api_name"),
            SField("SortOrder", "int", "{t}.display_order"),
            SField("IsClosed", "boolean", "{t}.is_closed"),
            SField("IsWon", "boolean", "{t}.is_won"),
            SField("DefaultProbability", "percent", "ROUND({t}.probability * 100, 2)"),
            SField("IsActive", "boolean", "{t}.is_active"),
            *_stamps(),
        ),
    ),
    SObject(
        "Task",
        "00T",
        "activities",
        _SF + " AND {t}.type IN ('call', 'email', 'task')",
        (
            SField("Id", "id", "{t}.id"),
            SField("Subject", "string", "{t}.subject"),
            SField(
                "TaskSubtype",
                "picklist",
                "CASE {t}.type WHEN 'call' THEN 'Call' WHEN 'email' THEN 'Email' ELSE 'Task' END",
            ),
            SField("Status", "picklist", "'Completed'"),
            _ref("OwnerId", "owner_id", "User"),
            _ref("WhatId", "deal_id", "Opportunity"),
            _ref("WhoId", "lead_id", "Lead"),
            SField("ActivityDate", "date", "substr({t}.occurred_at, 1, 10)"),
            SField("CompletedDateTime", "datetime", "{t}.occurred_at"),
            *_stamps(),
        ),
        _OWNER,
        deleted=_DELETED,
        partitions=tuple(_SF + f" AND {{t}}.type = '{kind}'" for kind in ("call", "email", "task")),
    ),
    SObject(
        "Event",
        "00U",
        "activities",
        _SF + " AND {t}.type = 'meeting'",
        (
            SField("Id", "id", "{t}.id"),
            SField("Subject", "string", "{t}.subject"),
            _ref("OwnerId", "owner_id", "User"),
            _ref("WhatId", "deal_id", "Opportunity"),
            _ref("WhoId", "lead_id", "Lead"),
            SField("ActivityDateTime", "datetime", "{t}.occurred_at"),
            SField("StartDateTime", "datetime", "{t}.occurred_at"),
            SField("ActivityDate", "date", "substr({t}.occurred_at, 1, 10)"),
            *_stamps(),
        ),
        _OWNER,
        deleted=_DELETED,
    ),
    SObject(
        "ForecastingQuota",
        "0J9",
        "quotas",
        _SF,
        (
            SField("Id", "id", "{t}.id"),
            _ref("QuotaOwnerId", "owner_id", "User"),
            SField("StartDate", "date", "{t}.period_start"),
            _money("QuotaAmount", "amount"),
            SField("CurrencyIsoCode", "picklist", "{t}.currency"),
            *_stamps(),
        ),
        (Relationship("QuotaOwner", "User", "QuotaOwnerId"),),
    ),
)
# Multi-currency orgs only (sandbox.company_rates): a store without Salesforce currencies is
# a single-currency org, where querying either object answers INVALID_TYPE.
CURRENCY_OBJECTS: tuple[SObject, ...] = (
    SObject(
        "CurrencyType",
        "02c",
        "currencies",
        _SF + " AND {t}.start_date IS NULL",
        (
            SField("Id", "id", "{t}.id"),
            SField("IsoCode", "picklist", "{t}.iso_code"),
            SField("ConversionRate", "double", "{t}.conversion_rate"),
            SField("DecimalPlaces", "int", "2"),
            SField("IsActive", "boolean", "{t}.is_active"),
            SField("IsCorporate", "boolean", "{t}.is_corporate"),
            *_stamps(),
        ),
    ),
    SObject(
        "DatedConversionRate",
        "04w",
        "currencies",
        _SF + " AND {t}.start_date IS NOT NULL",
        (
            SField("Id", "id", "{t}.id"),
            SField("IsoCode", "picklist", "{t}.iso_code"),
            SField("ConversionRate", "double", "{t}.conversion_rate"),
            SField("StartDate", "date", "{t}.start_date"),
            SField("NextStartDate", "date", "{t}.next_start_date"),
            *_stamps(),
        ),
    ),
)
SCHEMA: dict[str, SObject] = {obj.name.lower(): obj for obj in OBJECTS}
MULTI_CURRENCY_SCHEMA: dict[str, SObject] = {**SCHEMA, **{obj.name.lower(): obj for obj in CURRENCY_OBJECTS}}

# -- serialising records the way the API does ----------------------------------------------
# SQLite builds each record's JSON text (json_object) while it walks the rows: the
# server only joins the texts of a page, which keeps it several times faster than
# building dictionaries in Python.


def _json_value(type_: str, expr: str) -> str:
    """SQL for the JSON value Salesforce serves for a field of this describe type."""
    if type_ == "boolean":
        return f"json(CASE {expr} WHEN 0 THEN 'false' WHEN 1 THEN 'true' END)"
    if type_ in ("currency", "double", "percent", "anyType"):
        return f"sf_number({expr})"
    if type_ == "int":
        return f"CAST({expr} AS INTEGER)"
    if type_ == "datetime":  # store '...00.000Z' -> API '...00.000+0000'
        return (
            f"CASE WHEN substr({expr}, -1) = 'Z' THEN substr({expr}, 1, length({expr}) - 1) || '+0000' ELSE {expr} END"
        )
    return expr


def record_sql(compiled: Compiled, version: str) -> str:
    """The compiled query selecting one JSON record text per row."""
    base = f"/services/data/v{version}/sobjects/"
    columns = iter(compiled.columns)

    def attributes(obj_type: str, id_expr: str) -> str:
        return f"'attributes', json_object('type', '{obj_type}', 'url', '{base}{obj_type}/' || {id_expr})"

    parts = [attributes(compiled.sobject.name, next(columns))]
    for item in compiled.output:
        if isinstance(item, Column):
            parts.append(f"'{item.name}', {_json_value(item.type, next(columns))}")
            continue
        related_id = next(columns)
        inner = [attributes(item.target, related_id)]
        inner += [f"'{c.name}', {_json_value(c.type, next(columns))}" for c in item.columns]
        nested = f"json(CASE WHEN {related_id} IS NULL THEN NULL ELSE json_object({', '.join(inner)}) END)"
        parts.append(f"'{item.name}', {nested}")
    return f"SELECT json_object({', '.join(parts)}) {compiled.tail}"


def page_body(total: int, next_url: str | None, records: list[str]) -> bytes:
    """A query result page, keys in Salesforce's order."""
    head = f'{{"totalSize":{total},"done":{"false" if next_url else "true"}'
    if next_url:
        head += f',"nextRecordsUrl":"{next_url}"'
    return f'{head},"records":[{",".join(records)}]}}'.encode()


# -- query cursors --------------------------------------------------------------------------


class _Cursor:
    """One query's server-side cursor: a private connection holding a read transaction,
    so every page comes from the same snapshot the first page counted."""

    def __init__(self, store: Store, compiled: Compiled, version: str, page_size: int, now: datetime) -> None:
        self.lock = threading.Lock()
        self.conn = store.new_connection()
        self.conn.row_factory = None
        self.conn.create_function("sf_number", 1, sf_number, deterministic=True)
        try:
            self.conn.execute("BEGIN")
            self.total: int = self.conn.execute(compiled.count_sql, compiled.count_params).fetchone()[0]
            self.rows = self.conn.execute(record_sql(compiled, version), compiled.params)
        except BaseException:
            self.conn.close()
            raise
        self.page_size = page_size
        self.position = 0  # records served so far
        self.last_offset = -1  # the offset of the page served last, for a replay
        self.last_records: list[str] = []
        self.touched = now
        self.closed = False

    def next_page(self, now: datetime) -> list[str]:
        records = [row[0] for row in self.rows.fetchmany(self.page_size)]
        self.last_offset, self.last_records = self.position, records
        self.position += len(records)
        self.touched = now
        return records

    @property
    def exhausted(self) -> bool:
        return self.position >= self.total

    def close(self) -> None:
        self.closed = True
        self.conn.close()


# -- the server ------------------------------------------------------------------------------

VERSIONS = {"57.0": "Spring '23", "58.0": "Summer '23", "59.0": "Winter '24"}
LOCATOR_IDLE = timedelta(minutes=15)
_VERSION = r"/services/data/v(?P<ver>\d+\.\d)"
_BATCH = re.compile(r"batchSize\s*=\s*(\d+)", re.IGNORECASE)
_LOGIN_PATHS = re.compile(r"/services/(?:data/?|Soap/u/.*|oauth2/.*)")  # answered without a session
ORG_ID = "00D5e000000SbxQEAS"


def sf_error(status: int, code: str, message: str) -> Response:
    return Response(status, [{"message": message, "errorCode": code}])


def _expired() -> Response:
    return sf_error(401, "INVALID_SESSION_ID", "Session expired or invalid")


def _limit_exceeded() -> Response:
    return sf_error(403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.")


def _invalid_locator() -> Response:
    return sf_error(400, "INVALID_QUERY_LOCATOR", "invalid query locator")


class FakeSalesforce(FakeServer):
    """Salesforce's REST query API over a :class:`Store`, for one org; ``sandbox_org``: the org is a
    sandbox (its users log in at test.salesforce.com)."""

    name = "fake-salesforce"

    def __init__(
        self,
        store: Store,
        *,
        session_id: str,
        ssl_context: ssl.SSLContext,
        api_version: str = "59.0",
        daily_limit: int = 15000,
        page_size: int = 2000,
        max_cursors: int = 10,
        sandbox_org: bool = False,
        max_bulk_records: int = 50_000,
        port: int = 0,
    ) -> None:
        if api_version not in VERSIONS:
            raise ValueError(f"unsupported API version {api_version!r}; the fake serves {sorted(VERSIONS)}")
        super().__init__(ssl_context=ssl_context, port=port)
        self.store = store
        self.api_version = api_version
        self.daily_limit = daily_limit
        self.page_size = page_size
        self.max_cursors = max_cursors
        self.sandbox_org = sandbox_org
        self._sessions = {session_id}
        self._sessions_lock = threading.Lock()
        self._users: dict[str, ApiUser] = {}  # by lower-cased username: Salesforce usernames ignore case
        self._apps: dict[str, ConnectedApp] = {}
        self._user_seq = itertools.count(1)
        self._usage = 0
        self._usage_lock = threading.Lock()
        self._cursors: dict[str, _Cursor] = {}  # in opening order: the first is the oldest
        self._cursors_lock = threading.Lock()
        self._locator_seq = itertools.count(1)
        self.bulk = QueryJobs(store, SCHEMA, max_records=max_bulk_records)
        self.route("GET", r"/services/data/?", self._versions)
        self.route("GET", _VERSION + r"/?", self._resources)
        self.route("GET", _VERSION + r"/(?P<ep>query|queryAll)/?", self._query)
        self.route("GET", _VERSION + r"/(?P<ep>query|queryAll)/(?P<locator>\w+)-(?P<offset>\d+)/?", self._query_more)
        self.route("GET", _VERSION + r"/sobjects/?", self._describe_global)
        self.route("GET", _VERSION + r"/sobjects/(?P<obj>\w+)/describe/?", self._describe)
        self.route("POST", r"/services/Soap/u/(?P<ver>\d+\.\d)/?", self._soap_login)
        self.route("POST", r"/services/oauth2/token", self._oauth_token)
        self.route("POST", _VERSION + r"/jobs/query/?", self._create_job)
        self.route("GET", _VERSION + r"/jobs/query/(?P<job>\w+)/?", self._job_info)
        self.route("PATCH", _VERSION + r"/jobs/query/(?P<job>\w+)/?", self._abort_job)
        self.route("DELETE", _VERSION + r"/jobs/query/(?P<job>\w+)/?", self._delete_job)
        self.route("GET", _VERSION + r"/jobs/query/(?P<job>\w+)/results/?", self._job_results)

    # -- session and limits -----------------------------------------------------------------
    def expire_session(self) -> None:
        """From now on every session id issued so far is refused (401), as after a timeout or logout."""
        with self._sessions_lock:
            self._sessions.clear()

    def renew_session(self, session_id: str) -> None:
        with self._sessions_lock:
            self._sessions = {session_id}

    def _issue_session(self) -> str:
        session_id = f"{ORG_ID}!AQ{secrets.token_urlsafe(72)}"
        with self._sessions_lock:
            self._sessions.add(session_id)
        return session_id

    def _session_valid(self, token: str | None) -> bool:
        with self._sessions_lock:
            return token in self._sessions

    @property
    def api_usage(self) -> int:
        return self._usage

    def _count_request(self) -> int:
        with self._usage_lock:
            self._usage += 1
            return self._usage

    def _with_limit_info(self, response: Response) -> Response:
        response.headers["Sforce-Limit-Info"] = f"api-usage={self._usage}/{self.daily_limit}"
        return response

    def dispatch(self, request: Request) -> Response:
        if _LOGIN_PATHS.fullmatch(request.path):  # "Versions" and logging in need no session
            return super().dispatch(request)
        auth = request.headers.get("authorization", "")
        token = auth.split(" ", 1)[1] if auth.startswith(("Bearer ", "OAuth ")) else None
        if not self._session_valid(token):
            return _expired()
        if self._count_request() > self.daily_limit:
            return self._with_limit_info(_limit_exceeded())
        version = re.match(_VERSION + r"(?:/|\Z)", request.path)
        if version and version["ver"] not in self._versions_served():
            return self._with_limit_info(self.not_found(request, method_exists=False))
        return self._with_limit_info(super().dispatch(request))

    def fault_response(self, fault: Fault, request: Request) -> Response:
        if fault.kind in (FaultKind.JOB_FAILED, FaultKind.JOB_ABORTED):
            return self._doomed_job(fault, request)
        self._count_request()
        if fault.kind is FaultKind.EXPIRED_SESSION:
            return _expired()
        if fault.kind in (FaultKind.RATE_LIMIT, FaultKind.REQUEST_LIMIT):
            return self._with_limit_info(_limit_exceeded())
        if fault.status == 503:
            response = sf_error(503, "SERVER_UNAVAILABLE", "Server is temporarily unavailable, please try again later.")
        else:
            response = sf_error(
                fault.status,
                "UNKNOWN_EXCEPTION",
                "An unexpected error occurred. Please include this ErrorId if you contact support: 1234567-89 (-1)",
            )
        return self._with_limit_info(response)

    def not_found(self, request: Request, *, method_exists: bool) -> Response:
        if method_exists:
            return sf_error(
                405, "METHOD_NOT_ALLOWED", f"HTTP Method '{request.method}' not allowed. Allowed are GET,HEAD"
            )
        return sf_error(404, "NOT_FOUND", "The requested resource does not exist")

    # -- logging in ---------------------------------------------------------------------------
    @property
    def login_url(self) -> str:
        """Where the org's users log in, which is also the audience a JWT must name."""
        return f"https://{'test' if self.sandbox_org else 'login'}.salesforce.com"

    def add_user(self, username: str, password: str, security_token: str) -> ApiUser:
        """An API user who can log in (not a row of User: the synced company stays as generated)."""
        user = ApiUser(username, password, security_token, user_id=f"005{next(self._user_seq):012d}API")
        self._users[username.lower()] = user
        return user

    def set_password(self, username: str, password: str) -> None:
        """A password change, which (as in Salesforce) also resets the user's security token."""
        user = self._users[username.lower()]
        self._users[username.lower()] = ApiUser(
            user.username, password, secrets.token_hex(12), user.user_id, user.full_name
        )

    def register_app(self, client_id: str, certificate_pem: str) -> ConnectedApp:
        """A connected app using digital signatures, every API user pre-authorized."""
        app = ConnectedApp(client_id, load_public_key(certificate_pem), consumer_secret=secrets.token_hex(32))
        self._apps[client_id] = app
        return app

    def _soap_login(self, request: Request) -> Response:
        assert request.match is not None
        credentials = read_soap_login(request.body)
        if credentials is None:
            return soap_client_fault("Element {urn:partner.soap.sforce.com}login expected in the SOAP body")
        username, password = credentials
        user = self._users.get(username.lower())
        if user is None or password != user.password + user.security_token:
            return soap_fault("INVALID_LOGIN", INVALID_LOGIN)
        return soap_login_response(
            instance_url=self.base_url,
            version=request.match["ver"],
            org_id=ORG_ID,
            org_name=self.name,
            sandbox_org=self.sandbox_org,
            user=user,
            session_id=self._issue_session(),
        )

    def _oauth_token(self, request: Request) -> Response:
        # Parameters may come in the form body or in the query string.
        params = {**request.query, **parse_qs(request.body.decode("utf-8", "replace"))}
        grant_type = (params.get("grant_type") or [None])[0]
        if grant_type != JWT_BEARER:
            return oauth_error("unsupported_grant_type", "grant type not supported")
        now = self.store.clock()
        checked = check_assertion(
            (params.get("assertion") or [None])[0], apps=self._apps, audience=self.login_url, now=now
        )
        if isinstance(checked, Response):
            return checked
        app, username = checked
        user = self._users.get(username.lower())
        if user is None:
            return oauth_error("invalid_grant", "user hasn't approved this consumer")
        return token_response(
            app=app,
            user=user,
            org_id=ORG_ID,
            instance_url=self.base_url,
            login_url=self.login_url,
            session_id=self._issue_session(),
            now=now,
        )

    # -- resources ---------------------------------------------------------------------------
    def _versions_served(self) -> list[str]:
        return [v for v in VERSIONS if float(v) <= float(self.api_version)]

    def _versions(self, request: Request) -> Response:  # noqa: ARG002
        return Response(
            200,
            [{"label": VERSIONS[v], "url": f"/services/data/v{v}", "version": v} for v in self._versions_served()],
        )

    def _resources(self, request: Request) -> Response:
        assert request.match is not None
        base = f"/services/data/v{request.match['ver']}"
        return Response(200, {"sobjects": f"{base}/sobjects", "query": f"{base}/query", "queryAll": f"{base}/queryAll"})

    def schema(self) -> dict[str, SObject]:
        """The org's objects: a store with Salesforce currencies is a multi-currency org."""
        found = self.store.connect().execute("SELECT 1 FROM currencies WHERE crm = 'salesforce' LIMIT 1").fetchone()
        return MULTI_CURRENCY_SCHEMA if found else SCHEMA

    def _describe_global(self, request: Request) -> Response:
        assert request.match is not None
        base = f"/services/data/v{request.match['ver']}/sobjects"
        sobjects = [
            {
                "name": obj.name,
                "label": obj.name,
                "keyPrefix": obj.key_prefix,
                "queryable": True,
                "custom": False,
                "urls": {"sobject": f"{base}/{obj.name}", "describe": f"{base}/{obj.name}/describe"},
            }
            for obj in self.schema().values()
        ]
        return Response(200, {"encoding": "UTF-8", "maxBatchSize": 200, "sobjects": sobjects})

    def _describe(self, request: Request) -> Response:
        assert request.match is not None
        obj = self.schema().get(request.match["obj"].lower())
        if obj is None:
            return self.not_found(request, method_exists=False)
        via = {rel.via: rel.name for rel in obj.relationships}
        fields = [
            {
                "name": f.name,
                "label": f.name,
                "type": f.type,
                "nillable": f.name not in ("Id", "IsDeleted"),
                "filterable": True,
                "sortable": True,
                "referenceTo": [f.reference_to] if f.reference_to else [],
                "relationshipName": via.get(f.name),
            }
            for f in obj.fields
        ]
        body = {"name": obj.name, "label": obj.name, "keyPrefix": obj.key_prefix, "queryable": True, "custom": False}
        return Response(200, {**body, "fields": fields})

    # -- queries -----------------------------------------------------------------------------
    def _query(self, request: Request) -> Response:
        assert request.match is not None
        soql = request.arg("q")
        if not soql:
            return sf_error(400, "MALFORMED_QUERY", "A query string has to be specified")
        endpoint, version = request.match["ep"], request.match["ver"]
        try:
            compiled = translate(
                soql, self.schema(), include_deleted=endpoint == "queryAll", today=self.store.clock().date()
            )
        except SoqlError as exc:
            return sf_error(400, exc.code, exc.message)
        if compiled.count_only:
            total = self.store.connect().execute(compiled.count_sql, compiled.count_params).fetchone()[0]
            return Response(200, {"totalSize": total, "done": True, "records": []})
        now = self.store.clock()
        self._release_idle(now)
        cursor = _Cursor(self.store, compiled, version, self._batch_size(request), now)
        records = cursor.next_page(now)  # not shared yet: no lock needed
        if cursor.exhausted:
            cursor.close()
            return Response(200, page_body(cursor.total, None, records))
        locator = f"01g{next(self._locator_seq):012d}AAA"
        self._register(locator, cursor)
        return self._page(cursor, records, f"/services/data/v{version}/{endpoint}/{locator}")

    def _query_more(self, request: Request) -> Response:
        assert request.match is not None
        locator, offset = request.match["locator"], int(request.match["offset"])
        now = self.store.clock()
        self._release_idle(now)
        with self._cursors_lock:
            cursor = self._cursors.get(locator)
        if cursor is None:
            return _invalid_locator()
        with cursor.lock:
            if cursor.closed:
                return _invalid_locator()
            if offset == cursor.position:
                records = cursor.next_page(now)
            elif offset == cursor.last_offset:  # the client retries the page it did not get
                records = cursor.last_records
                cursor.touched = now
            else:
                return _invalid_locator()
            if cursor.exhausted:
                cursor.close()
        if cursor.closed:
            with self._cursors_lock:
                self._cursors.pop(locator, None)
        prefix = request.path.rstrip("/").rsplit("-", 1)[0]
        return self._page(cursor, records, prefix)

    def _page(self, cursor: _Cursor, records: list[str], locator_url: str) -> Response:
        next_url = None if cursor.closed else f"{locator_url}-{cursor.position}"
        return Response(200, page_body(cursor.total, next_url, records))

    def _register(self, locator: str, cursor: _Cursor) -> None:
        with self._cursors_lock:
            self._cursors[locator] = cursor
            evicted = []
            while len(self._cursors) > self.max_cursors:
                evicted.append(self._cursors.pop(next(iter(self._cursors))))
        self._close(evicted)

    def _release_idle(self, now: datetime) -> None:
        with self._cursors_lock:
            stale = [loc for loc, c in self._cursors.items() if now - c.touched > LOCATOR_IDLE]
            idle = [self._cursors.pop(loc) for loc in stale]
        self._close(idle)

    @staticmethod
    def _close(cursors: list[_Cursor]) -> None:
        """Close cursors already out of the registry (never under the registry lock, so a
        page being served keeps its cursor lock without deadlock)."""
        for cursor in cursors:
            with cursor.lock:
                if not cursor.closed:
                    cursor.close()

    def _batch_size(self, request: Request) -> int:
        m = _BATCH.search(request.headers.get("sforce-query-options", ""))
        return min(max(int(m.group(1)), 200), 2000) if m else self.page_size

    @property
    def open_cursors(self) -> int:
        with self._cursors_lock:
            return len(self._cursors)

    # -- Bulk API 2.0 query jobs ---------------------------------------------------------------
    def _doomed_job(self, fault: Fault, request: Request) -> Response:
        response = self.dispatch(request)
        if response.status == 200 and isinstance(response.body, dict):
            self.bulk.doom(response.body["id"], "Failed" if fault.kind is FaultKind.JOB_FAILED else "Aborted")
        return response

    def _create_job(self, request: Request) -> Response:
        assert request.match is not None
        try:
            body = request.json()
        except ValueError:
            return sf_error(400, "JSON_PARSER_ERROR", "The request body is not valid JSON")
        try:
            job = self.bulk.create(body, request.match["ver"], self.store.clock())
        except BulkError as exc:
            return sf_error(exc.status, exc.code, exc.message)
        return Response(200, job.info(detailed=False))

    def _job_info(self, request: Request) -> Response:
        assert request.match is not None
        return self._bulk_call(lambda: Response(200, self.bulk.poll(request.match["job"]).info()))

    def _abort_job(self, request: Request) -> Response:
        assert request.match is not None
        return self._bulk_call(lambda: Response(200, self.bulk.abort(request.match["job"], request.json()).info()))

    def _delete_job(self, request: Request) -> Response:
        assert request.match is not None
        job_id = request.match["job"]

        def delete() -> Response:
            self.bulk.delete(job_id)
            return Response(204, b"")

        return self._bulk_call(delete)

    def _job_results(self, request: Request) -> Response:
        assert request.match is not None
        match = request.match

        def results() -> Response:
            text, locator, count = self.bulk.results(
                match["job"], match["ver"], request.arg("locator"), request.arg("maxRecords")
            )
            headers = {
                "Content-Type": "text/csv",
                "Sforce-Locator": locator,
                "Sforce-NumberOfRecords": str(count),
            }
            return Response(200, text.encode(), headers)

        return self._bulk_call(results)

    @staticmethod
    def _bulk_call(handler: Callable[[], Response]) -> Response:
        try:
            return handler()
        except BulkError as exc:
            return sf_error(exc.status, exc.code, exc.message)

    @property
    def bulk_jobs(self) -> list[dict[str, Any]]:
        """The info of every query job not deleted, for tests to look at."""
        return self.bulk.infos()

    def stop(self) -> None:
        super().stop()
        self.bulk.close()
        with self._cursors_lock:
            cursors = list(self._cursors.values())
            self._cursors.clear()
        self._close(cursors)
