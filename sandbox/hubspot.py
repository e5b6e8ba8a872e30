"""A fake HubSpot CRM API on loopback, served from the sandbox store (crm='hubspot' rows),
that the real hubspot-api-client talks to unchanged:
``hubspot.Client.create(access_token=T, host=server.base_url)``.

Endpoints and the HubSpot pages they follow:

- ``POST /crm/v3/objects/{deals|contacts|calls|emails|meetings|tasks|notes}/search``
  (https://developers.hubspot.com/docs/api/crm/search): filterGroups, one sort,
  ``limit`` <= 200, ``after`` is an offset, 10,000 results per query at most, never
  archived records. See :mod:`sandbox.hubspot_search`.
- ``GET /crm/v3/objects/{object}`` and ``/{object}/{id}``
  (https://developers.hubspot.com/docs/api/crm/objects, .../crm/deals): ``limit`` <= 100,
  keyset ``after``, repeated ``properties``, ``propertiesWithHistory`` (50 per page),
  ``archived=true`` for archived records only.
- ``POST /crm/v3/objects/{object}/batch/read``
  (https://developers.hubspot.com/docs/api/crm/objects, "batch read"): ``inputs`` by id (at
  most 100), ``properties``, ``propertiesWithHistory``; ids that are unknown or archived come
  back as one 207 ``OBJECT_NOT_FOUND`` error listing them.
- ``GET /crm/v3/owners/`` and ``/crm/v3/owners/{id}``
  (https://developers.hubspot.com/docs/api/crm/owners): deactivated or deleted users are
  archived owners; ``teams`` holds the user's team as primary; ``userId`` is the user's seq.
- ``GET /crm/v3/pipelines/deals`` and ``/crm/v3/pipelines/deals/{id}``
  (https://developers.hubspot.com/docs/api/crm/pipelines): stage metadata ``isClosed``
  and ``probability`` as strings (a won stage is closed with probability 1.0).
- ``GET /settings/v3/currencies/company-currency`` and ``.../exchange-rates``
  (https://developers.hubspot.com/docs/api/settings/currencies): the company currency,
  and per other currency ``conversionRate`` = company-currency units per one unit, with
  ``effectiveAt``; ``limit`` <= 100, ``after``. A portal without rates lists none.
- ``POST /crm/v4/associations/{from}/{to}/batch/read``
  (https://developers.hubspot.com/docs/api/crm/associations/v4): deals <-> contacts and
  deals/contacts <-> engagements, HUBSPOT_DEFINED type ids, at most 1,000 inputs
  (developers.hubspot.com/changelog/bug-fix-batch-read-limit-for-hubspot-associations-api);
  inputs with nothing associated come back as 207 NO_ASSOCIATIONS_FOUND errors.

Errors use HubSpot's body ``{"status": "error", "message", "correlationId", "category"}``.
Rate limits (https://developers.hubspot.com/docs/api/usage-details) are off unless a
:class:`~sandbox.hubspot_ratelimit.RateLimits` is given.
"""

from __future__ import annotations

import itertools
import math
import ssl
import time
import uuid
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

import orjson

from sandbox.faults import Fault, FaultKind
from sandbox.httpbase import FakeServer, Request, Response
from sandbox.hubspot_assoc import read_associations
from sandbox.hubspot_objects import HubSpotError, object_spec
from sandbox.hubspot_ratelimit import RateLimits, SlidingWindow, Verdict
from sandbox.hubspot_records import Selection, split_names
from sandbox.hubspot_search import invalid, parse_search
from sandbox.store import Store, iso_utc

AUTH_MESSAGE = (
    "Authentication credentials not found. This API supports OAuth 2.0 authentication and you can find "
    "more details at https://developers.hubspot.com/docs/methods/auth/oauth-overview"
)
LIST_MAX_LIMIT = 100
BATCH_MAX_INPUTS = 100
HISTORY_MAX_LIMIT = 50
OWNERS_MAX_LIMIT = 500
# Lookups that store.INDEXES does not carry. Search only sees live rows and counts its
# matches on every page, so its two usual windows (hs_object_id compared as an integer,
# the modification stamp) get partial indexes that answer the count on their own.
HUBSPOT_INDEXES = """
CREATE INDEX IF NOT EXISTS ix_deals_live_numid ON deals (crm, CAST(id AS INTEGER)) WHERE deleted_at IS NULL;
CREATE INDEX IF NOT EXISTS ix_deals_live_mod ON deals (crm, modified_at) WHERE deleted_at IS NULL;
CREATE INDEX IF NOT EXISTS ix_leads_live_numid ON leads (crm, CAST(id AS INTEGER)) WHERE deleted_at IS NULL;
CREATE INDEX IF NOT EXISTS ix_leads_live_mod ON leads (crm, modified_at) WHERE deleted_at IS NULL;
CREATE INDEX IF NOT EXISTS ix_act_live_numid ON activities (crm, type, CAST(id AS INTEGER)) WHERE deleted_at IS NULL;
CREATE INDEX IF NOT EXISTS ix_act_live_mod ON activities (crm, type, modified_at) WHERE deleted_at IS NULL;
CREATE INDEX IF NOT EXISTS ix_deals_lead ON deals (crm, lead_id);
CREATE INDEX IF NOT EXISTS ix_leads_deal ON leads (crm, converted_deal_id);
CREATE INDEX IF NOT EXISTS ix_act_lead ON activities (crm, lead_id);
"""


class FakeHubSpot(FakeServer):
    name = "fake-hubspot"

    def __init__(
        self,
        store: Store,
        access_token: str,
        *,
        rate_limits: RateLimits | None = None,
        clock: Callable[[], float] = time.monotonic,
        ssl_context: ssl.SSLContext | None = None,
        port: int = 0,
    ) -> None:
        super().__init__(ssl_context=ssl_context, port=port)
        self.store = store
        self.access_token = access_token
        self._windows: dict[str, SlidingWindow] = {}
        if rate_limits is not None:
            self._windows = {
                "TEN_SECONDLY_ROLLING": SlidingWindow(rate_limits.burst, rate_limits.burst_window, clock),
                "SECONDLY": SlidingWindow(rate_limits.search_per_second, 1.0, clock),
            }
        self._correlation = itertools.count(1)
        store.create_indexes()
        store.connect().executescript(HUBSPOT_INDEXES)
        self.route("POST", r"/crm/v3/objects/(?P<obj>[^/]+)/search", self._search_objects)
        self.route("POST", r"/crm/v3/objects/(?P<obj>[^/]+)/batch/read", self._batch_read)
        self.route("GET", r"/crm/v3/objects/(?P<obj>[^/]+)/?", self._list_objects)
        self.route("GET", r"/crm/v3/objects/(?P<obj>[^/]+)/(?P<id>[^/]+)", self._get_object)
        self.route("GET", r"/crm/v3/owners/?", self._list_owners)
        self.route("GET", r"/crm/v3/owners/(?P<id>[^/]+)", self._get_owner)
        self.route("GET", r"/crm/v3/pipelines/(?P<obj>[^/]+)/?", self._list_pipelines)
        self.route("GET", r"/crm/v3/pipelines/(?P<obj>[^/]+)/(?P<id>[^/]+)", self._get_pipeline)
        self.route("POST", r"/crm/v4/associations/(?P<src>[^/]+)/(?P<dst>[^/]+)/batch/read", self._associations)
        self.route("GET", r"/settings/v3/currencies/company-currency/?", self._company_currency)
        self.route("GET", r"/settings/v3/currencies/exchange-rates/?", self._exchange_rates)

    # -- errors --------------------------------------------------------------------
    def error(self, status: int, message: str, category: str | None, **extra: Any) -> Response:
        correlation = str(uuid.UUID(int=next(self._correlation)))
        body: dict[str, Any] = {"status": "error", "message": message, "correlationId": correlation}
        if category is not None:
            body["category"] = category
        body.update(extra)
        return Response(status, body, {"X-HubSpot-Correlation-Id": correlation})

    def not_found(self, request: Request, *, method_exists: bool) -> Response:
        if method_exists:
            return self.error(405, f"{request.method} is not supported on {request.path}", "VALIDATION_ERROR")
        return self.error(404, f"Resource not found: {request.path}", "OBJECT_NOT_FOUND")

    def _rate_limited(self, policy: str, retry_after: int, headers: dict[str, str] | None = None) -> Response:
        response = self.error(
            429,
            f"You have reached your {policy.lower()} limit.",
            "RATE_LIMITS",
            errorType="RATE_LIMIT",
            policyName=policy,
        )
        response.headers.update({"Retry-After": str(retry_after), **(headers or {})})
        return response

    def fault_response(self, fault: Fault, request: Request) -> Response:  # noqa: ARG002
        if fault.kind is FaultKind.RATE_LIMIT:
            return self._rate_limited("SECONDLY", fault.retry_after)
        if fault.kind is FaultKind.REQUEST_LIMIT:  # HubSpot's counterpart of an exhausted daily quota
            return self._rate_limited("DAILY", fault.retry_after)
        if fault.kind is FaultKind.SERVER_ERROR:
            return self.error(fault.status, HTTPStatus(fault.status).phrase.lower(), None)
        if fault.kind is FaultKind.EXPIRED_SESSION:
            expired = iso_utc(self.store.clock())
            return self.error(
                401,
                "The OAuth token used to make this call expired 1 second(s) ago.",
                "EXPIRED_AUTHENTICATION",
                context={"expire time": [expired]},
            )
        raise ValueError(f"{fault.kind} has no HubSpot response")

    # -- the pipeline every request goes through -------------------------------------
    def dispatch(self, request: Request) -> Response:
        if request.headers.get("authorization") != f"Bearer {self.access_token}":
            return self.error(401, AUTH_MESSAGE, "INVALID_AUTHENTICATION")
        policy, verdict, limit_headers = self._take_slot(request)
        if verdict is not None and not verdict.admitted:
            return self._rate_limited(policy, verdict.retry_after, limit_headers)
        try:
            response = super().dispatch(request)
        except HubSpotError as exc:
            response = self.error(exc.status, exc.message, exc.category)
        except orjson.JSONDecodeError as exc:
            response = self.error(400, f"Invalid input JSON: {exc}", "VALIDATION_ERROR")
        response.headers.update(limit_headers)
        return response

    def _take_slot(self, request: Request) -> tuple[str, Verdict | None, dict[str, str]]:
        """Count the request against its window: search has its own secondly one."""
        policy = "SECONDLY" if request.method == "POST" and request.path.endswith("/search") else "TEN_SECONDLY_ROLLING"
        window = self._windows.get(policy)
        if window is None:
            return policy, None, {}
        verdict = window.take()
        if policy == "SECONDLY":
            headers = {"X-HubSpot-RateLimit-Secondly": str(verdict.limit)}
            headers["X-HubSpot-RateLimit-Secondly-Remaining"] = str(verdict.remaining)
        else:
            headers = {"X-HubSpot-RateLimit-Interval-Milliseconds": str(math.ceil(window.window * 1000))}
            headers["X-HubSpot-RateLimit-Max"] = str(verdict.limit)
            headers["X-HubSpot-RateLimit-Remaining"] = str(verdict.remaining)
        return policy, verdict, headers

    def _stage_ids(self) -> frozenset[str]:
        rows = self.store.connect().execute("SELECT id FROM stages WHERE crm = 'hubspot'")
        return frozenset(r[0] for r in rows)

    # -- CRM objects -----------------------------------------------------------------
    def _search_objects(self, request: Request) -> Response:
        assert request.match is not None
        spec = object_spec(request.match["obj"])
        stage_ids = self._stage_ids()
        query = parse_search(spec, request.json(), stage_ids)
        selection = Selection.build(spec, query.properties, [], stage_ids)
        where = f"t.deleted_at IS NULL AND {query.where}"
        conn = self.store.connect()
        total = selection.count(conn, where, query.params)
        rows = selection.fetch(conn, where, query.params, query.order_by, query.limit, query.offset)
        body: dict[str, Any] = {"total": total, "results": selection.records(conn, rows)}
        end = query.offset + len(rows)
        if rows and end < total:
            body["paging"] = {"next": {"after": str(end), "link": f"?after={end}"}}
        return Response(200, body)

    def _list_objects(self, request: Request) -> Response:
        assert request.match is not None
        spec = object_spec(request.match["obj"])
        with_history = split_names(request.query.get("propertiesWithHistory", []))
        limit = _int_arg(request, "limit", 10)
        if not 1 <= limit <= LIST_MAX_LIMIT:
            raise invalid(f"limit must be between 1 and {LIST_MAX_LIMIT}, got {limit}")
        if with_history:
            limit = min(limit, HISTORY_MAX_LIMIT)
        where, params = _archived_clause(request), []
        after = _int_arg(request, "after", None)
        if after is not None:
            where, params = f"{where} AND t.seq >= ?", [after]
        stage_ids = self._stage_ids()
        selection = Selection.build(spec, split_names(request.query.get("properties", [])), with_history, stage_ids)
        conn = self.store.connect()
        rows = selection.fetch(conn, where, params, "t.seq", limit + 1)
        body: dict[str, Any] = {"results": selection.records(conn, rows[:limit])}
        if len(rows) > limit:
            token = str(rows[limit]["seq"])
            body["paging"] = {"next": {"after": token, "link": f"{self.base_url}{request.path}?after={token}"}}
        return Response(200, body)

    def _batch_read(self, request: Request) -> Response:
        assert request.match is not None
        spec = object_spec(request.match["obj"])
        body = request.json()
        inputs = body.get("inputs") if isinstance(body, dict) else None
        if not isinstance(inputs, list) or not all(isinstance(i, dict) and i.get("id") is not None for i in inputs):
            raise invalid('inputs must be a list of {"id": ...}')
        if len(inputs) > BATCH_MAX_INPUTS:
            raise invalid(f"A batch read takes at most {BATCH_MAX_INPUTS} inputs, got {len(inputs)}")
        if body.get("idProperty") not in (None, "", "hs_object_id"):
            raise invalid("The sandbox reads batches by record id only (no idProperty)")
        names = {key: body.get(key) or [] for key in ("properties", "propertiesWithHistory")}
        for key, value in names.items():
            if not isinstance(value, list) or not all(isinstance(n, str) for n in value):
                raise invalid(f"{key} must be a list of property names")
        ids = list(dict.fromkeys(str(i["id"]) for i in inputs))
        selection = Selection.build(spec, names["properties"], names["propertiesWithHistory"], self._stage_ids())
        conn = self.store.connect()
        where = f"{_archived_clause(request)} AND t.id IN ({', '.join('?' for _ in ids)})"
        rows = selection.fetch(conn, where, ids, "t.seq", len(ids)) if ids else []
        now = iso_utc(self.store.clock())
        out: dict[str, Any] = {
            "status": "COMPLETE",
            "results": selection.records(conn, rows),
            "startedAt": now,
            "completedAt": now,
        }
        found = {row["id"] for row in rows}
        missing = [i for i in ids if i not in found]
        if not missing:
            return Response(200, out)
        error = {
            "status": "error",
            "category": "OBJECT_NOT_FOUND",
            "message": f"Could not get some {spec.singular.upper()} objects, they may be deleted or not exist. "
            "Check that ids are valid.",
            "context": {"ids": missing},
        }
        return Response(207, {**out, "numErrors": 1, "errors": [error]})

    def _get_object(self, request: Request) -> Response:
        assert request.match is not None
        spec = object_spec(request.match["obj"])
        object_id = request.match["id"]
        if not object_id.isdigit():
            return self.error(
                404,
                "Object not found.  objectId are usually numeric.",
                "OBJECT_NOT_FOUND",
                context={"id": [object_id]},
            )
        stage_ids = self._stage_ids()
        selection = Selection.build(
            spec,
            split_names(request.query.get("properties", [])),
            split_names(request.query.get("propertiesWithHistory", [])),
            stage_ids,
        )
        conn = self.store.connect()
        rows = selection.fetch(conn, f"{_archived_clause(request)} AND t.id = ?", [object_id], "t.seq", 1)
        if not rows:
            return Response(404, b"")  # HubSpot answers an unknown numeric id with an empty 404
        return Response(200, selection.records(conn, rows)[0])

    # -- owners ------------------------------------------------------------------------
    _OWNER_SQL = (
        "SELECT u.*, tm.name AS team_name FROM users u "
        "LEFT JOIN teams tm ON tm.crm = u.crm AND tm.id = u.team_id WHERE u.crm = 'hubspot' AND "
    )

    def _list_owners(self, request: Request) -> Response:
        limit = _int_arg(request, "limit", 100)
        if not 1 <= limit <= OWNERS_MAX_LIMIT:
            raise invalid(f"limit must be between 1 and {OWNERS_MAX_LIMIT}, got {limit}")
        clauses, params = [_owner_archived(request)], []
        after = _int_arg(request, "after", None)
        if after is not None:
            clauses.append("u.seq >= ?")
            params.append(after)
        email = request.arg("email")
        if email:
            clauses.append("lower(u.email) = lower(?)")
            params.append(email)
        sql = f"{self._OWNER_SQL}{' AND '.join(clauses)} ORDER BY u.seq LIMIT ?"
        rows = self.store.connect().execute(sql, (*params, limit + 1)).fetchall()
        body: dict[str, Any] = {"results": [_owner(row) for row in rows[:limit]]}
        if len(rows) > limit:
            token = str(rows[limit]["seq"])
            body["paging"] = {"next": {"after": token, "link": f"{self.base_url}/crm/v3/owners/?after={token}"}}
        return Response(200, body)

    def _get_owner(self, request: Request) -> Response:
        assert request.match is not None
        sql = f"{self._OWNER_SQL}{_owner_archived(request)} AND u.id = ?"
        row = self.store.connect().execute(sql, (request.match["id"],)).fetchone()
        if row is None:
            return self.error(404, f"Owner {request.match['id']} not found", "OBJECT_NOT_FOUND")
        return Response(200, _owner(row))

    # -- pipelines ---------------------------------------------------------------------
    def _pipelines(self, object_type: str, pipeline_id: str | None = None) -> list[dict[str, Any]]:
        object_spec(object_type)  # an unknown type is refused like HubSpot does
        if object_type != "deals":
            return []  # the sandbox company has deal pipelines only
        conn = self.store.connect()
        where, params = "crm = 'hubspot'", []
        if pipeline_id is not None:
            where, params = f"{where} AND id = ?", [pipeline_id]
        pipelines = conn.execute(f"SELECT * FROM pipelines WHERE {where} ORDER BY display_order, id", params)
        stages = conn.execute("SELECT * FROM stages WHERE crm = 'hubspot' ORDER BY display_order, seq").fetchall()
        return [
            {
                "id": p["id"],
                "label": p["label"],
                "displayOrder": p["display_order"],
                "createdAt": p["created_at"],
                "updatedAt": p["modified_at"],
                "archived": False,
                "stages": [_stage(s) for s in stages if s["pipeline_id"] == p["id"]],
            }
            for p in pipelines
        ]

    def _list_pipelines(self, request: Request) -> Response:
        assert request.match is not None
        return Response(200, {"results": self._pipelines(request.match["obj"])})

    def _get_pipeline(self, request: Request) -> Response:
        assert request.match is not None
        found = self._pipelines(request.match["obj"], request.match["id"])
        if not found:
            return self.error(404, f"Unable to find pipeline {request.match['id']}", "OBJECT_NOT_FOUND")
        return Response(200, found[0])

    # -- currencies ----------------------------------------------------------------------
    def _company_currency(self, request: Request) -> Response:  # noqa: ARG002
        row = (
            self.store.connect()
            .execute("SELECT * FROM currencies WHERE crm = 'hubspot' AND is_corporate = 1 ORDER BY seq LIMIT 1")
            .fetchone()
        )
        code = row["iso_code"] if row else "USD"  # every portal has one; a sandbox without rates is USD
        return Response(
            200, {"currencyCode": code, "currencyName": code, "createdAt": row["created_at"] if row else None}
        )

    def _exchange_rates(self, request: Request) -> Response:
        limit = _int_arg(request, "limit", 100)
        if not 1 <= limit <= LIST_MAX_LIMIT:
            raise invalid(f"limit must be between 1 and {LIST_MAX_LIMIT}, got {limit}")
        after = _int_arg(request, "after", 0)
        conn = self.store.connect()
        company = conn.execute(
            "SELECT iso_code FROM currencies WHERE crm = 'hubspot' AND is_corporate = 1 LIMIT 1"
        ).fetchone()
        rows = conn.execute(
            "SELECT * FROM currencies WHERE crm = 'hubspot' AND is_corporate = 0 AND seq > ? ORDER BY seq LIMIT ?",
            (after, limit + 1),
        ).fetchall()
        body: dict[str, Any] = {"results": [_exchange_rate(row, company[0]) for row in rows[:limit]]}
        if len(rows) > limit:
            token = str(rows[limit - 1]["seq"])
            link = f"{self.base_url}/settings/v3/currencies/exchange-rates?after={token}"
            body["paging"] = {"next": {"after": token, "link": link}}
        return Response(200, body)

    # -- associations ------------------------------------------------------------------
    def _associations(self, request: Request) -> Response:
        assert request.match is not None
        src, dst = object_spec(request.match["src"]), object_spec(request.match["dst"])
        now = iso_utc(self.store.clock())
        status, body = read_associations(self.store.connect(), src, dst, request.json())
        return Response(status, {**body, "startedAt": now, "completedAt": now})


def _exchange_rate(row: Any, company_currency: str) -> dict[str, Any]:
    """conversionRate: units of the company currency per one unit of fromCurrencyCode."""
    effective = f"{row['start_date']}T00:00:00Z" if row["start_date"] else row["created_at"]
    return {
        "id": row["id"],
        "fromCurrencyCode": row["iso_code"],
        "toCurrencyCode": company_currency,
        "conversionRate": float(row["conversion_rate"]),
        "effectiveAt": effective,
        "visibleInUI": bool(row["is_active"]),
        "createdAt": row["created_at"],
        "updatedAt": row["modified_at"],
    }


def _int_arg(request: Request, name: str, default: int | None) -> int | None:
    raw = request.arg(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise invalid(f"{name} must be an integer, got {raw!r}") from None


def _flag(request: Request, name: str) -> bool:
    # The SDK sends Python booleans as 'True' / 'False'.
    return (request.arg(name) or "false").lower() == "true"


def _archived_clause(request: Request) -> str:
    return "t.deleted_at IS NOT NULL" if _flag(request, "archived") else "t.deleted_at IS NULL"


def _owner_archived(request: Request) -> str:
    archived = "(u.deleted_at IS NOT NULL OR NOT u.is_active)"
    return archived if _flag(request, "archived") else f"NOT {archived}"


def _owner(row: Any) -> dict[str, Any]:
    archived = row["deleted_at"] is not None or not row["is_active"]
    teams = [{"id": row["team_id"], "name": row["team_name"], "primary": True}] if row["team_name"] else []
    return {
        "id": row["id"],
        "email": row["email"],
        "firstName": row["first_name"],
        "lastName": row["last_name"],
        "userId": row["seq"],
        "userIdIncludingInactive": row["seq"],
        "type": "PERSON",
        "createdAt": row["created_at"],
        "updatedAt": row["modified_at"],
        "archived": archived,
        "teams": teams,
    }


def _stage(row: Any) -> dict[str, Any]:
    return {
        "id": row["id"],
        "label": row["label"],
        "displayOrder": row["display_order"],
        "metadata": {
            "isClosed": "true" if row["is_closed"] else "false",
            "probability": str(float(row["probability"])),
        },
        "createdAt": row["created_at"],
        "updatedAt": row["modified_at"],
        "archived": not row["is_active"],
        "writePermissions": "CRM_PERMISSIONS_ENFORCEMENT",
    }
