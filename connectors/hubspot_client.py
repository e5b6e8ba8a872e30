"""HubSpot through hubspot-api-client: timeouts, retries, error translation and answer checks.

Why raw JSON: the SDK's model deserialisation reads ~3k records/s (most of it parsing
dates). Its api methods are called with ``_preload_content=False`` and the body parsed
with orjson, which is ~8x faster. The SDK does not check answers either way
(``client_side_validation`` is off: a body cut in half becomes a page of ``None``), so
every answer is checked here, and one HubSpot would never send is a TransientError.

The SDK's own urllib3 retries are off (``retry=False``): :mod:`connectors.retry` is the
one place that waits, so a 429 is never retried twice over. A private app token cannot
be renewed, so an auth failure is final for the run. The token never appears in an
error: messages are built from the status, HubSpot's category and its message only.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

import hubspot
import orjson
import urllib3
from hubspot.crm.associations.v4.exceptions import ApiException as AssociationsApiException
from hubspot.crm.objects.exceptions import ApiException as ObjectsApiException
from hubspot.crm.owners.exceptions import ApiException as OwnersApiException
from hubspot.crm.pipelines.exceptions import ApiException as PipelinesApiException

from connectors import retry
from connectors.errors import AuthError, Forbidden, RateLimited, StreamFailed, TransientError
from models.errors import ConfigError
from models.settings import HubSpotSettings

log = logging.getLogger("salespulse.connectors.hubspot")

API_EXCEPTIONS = (ObjectsApiException, OwnersApiException, PipelinesApiException, AssociationsApiException)
SEARCH_LIMIT = 200  # records per search page (HubSpot's maximum)
LIST_LIMIT = 100  # records per list page (HubSpot's maximum)
HISTORY_BATCH = 50  # records per batch read with property history (HubSpot returns 50 with history)
ASSOCIATION_BATCH = 1000  # inputs per associations batch read (HubSpot's maximum)
CURRENCY_PATH = "/settings/v3/currencies"
DEFAULT_WAIT_S = 1.0  # a 429 without Retry-After or interval header: the search limit is per second

Check = Callable[[dict[str, Any]], str | None]


class HubSpotClient:
    """One SDK client (one API object per endpoint family, each with its connection pool)."""

    def __init__(self, settings: HubSpotSettings, policy: retry.RetryPolicy) -> None:
        token = settings.access_token.get_secret_value() if settings.access_token else ""
        if not token:
            raise ConfigError(
                "no HubSpot access token: set SALESPULSE_HUBSPOT__ACCESS_TOKEN to a private app token",
                source="settings",
                key="hubspot.access_token",
            )
        crm = hubspot.Client.create(access_token=token, host=settings.base_url.rstrip("/"), retry=False).crm
        # The discovery properties build a new ApiClient (and pool) on every access: keep one each.
        self._search = crm.objects.search_api
        self._basic = crm.objects.basic_api
        self._batch = crm.objects.batch_api
        self._owners = crm.owners.owners_api
        self._pipelines = crm.pipelines.pipelines_api
        self._associations = crm.associations.v4.batch_api
        self._raw = {"_preload_content": False, "_request_timeout": settings.timeout_s}
        self.policy = policy

    # -- endpoints -----------------------------------------------------------------------
    def search(self, object_type: str, body: dict[str, Any]) -> list[dict[str, Any]]:
        answer = self._call(
            f"{object_type} search",
            lambda: self._search.do_search(object_type, public_object_search_request=body, **self._raw),
            _objects,
        )
        return answer["results"]

    def list_page(
        self, object_type: str, after: str | None, *, properties: list[str], archived: bool
    ) -> tuple[list[dict[str, Any]], str | None]:
        answer = self._call(
            f"{object_type} list{' (archived)' if archived else ''}",
            lambda: self._basic.get_page(
                object_type, limit=LIST_LIMIT, after=after, properties=properties, archived=archived, **self._raw
            ),
            _objects,
        )
        return answer["results"], _next_after(answer)

    def histories(self, object_type: str, ids: list[str], prop: str) -> dict[str, list[dict[str, Any]]]:
        """Each record's history of one property (newest first, as HubSpot gives it)."""
        found: dict[str, list[dict[str, Any]]] = {}
        for chunk in _chunks(ids, HISTORY_BATCH):
            body = {
                "inputs": [{"id": i} for i in chunk],
                "properties": ["hs_object_id"],
                "propertiesWithHistory": [prop],
            }
            answer = self._call(
                f"{object_type} {prop} history",
                lambda body=body: self._batch.read(
                    object_type, batch_read_input_simple_public_object_id=body, archived=False, **self._raw
                ),
                _histories,
            )
            for record in answer["results"]:
                found[str(record["id"])] = (record.get("propertiesWithHistory") or {}).get(prop) or []
        return found

    def owners_page(self, after: str | None, *, archived: bool) -> tuple[list[dict[str, Any]], str | None]:
        answer = self._call(
            f"owners{' (archived)' if archived else ''}",
            lambda: self._owners.get_page(limit=LIST_LIMIT, after=after, archived=archived, **self._raw),
            _owners,
        )
        return answer["results"], _next_after(answer)

    def pipelines(self, object_type: str) -> list[dict[str, Any]]:
        answer = self._call(
            f"{object_type} pipelines", lambda: self._pipelines.get_all(object_type, **self._raw), _pipelines
        )
        return answer["results"]

    def company_currency(self) -> str | None:
        answer = self._call("company currency", lambda: self._get(CURRENCY_PATH + "/company-currency", []), _currency)
        return answer.get("currencyCode")

    def exchange_rates_page(self, after: str | None) -> tuple[list[dict[str, Any]], str | None]:
        query = [("limit", LIST_LIMIT)] + ([("after", after)] if after else [])
        answer = self._call(
            "exchange rates", lambda: self._get(CURRENCY_PATH + "/exchange-rates", query), _exchange_rates
        )
        return answer["results"], _next_after(answer)

    def _get(self, path: str, query: list[tuple[str, Any]]) -> Any:
        """A GET the SDK has no typed API for, through its generated client's raw ``call_api``.

        ``hubspot.Client.api_request`` would also do, but it has no timeout and prints errors.
        """
        return self._owners.api_client.call_api(
            path,
            "GET",
            {},
            query,
            {"Accept": "application/json"},
            auth_settings=["oauth2"],
            _return_http_data_only=True,
            **self._raw,
        )

    def first_associated(self, from_type: str, to_type: str, ids: Iterable[str]) -> dict[str, str]:
        """For each record, the lowest-id record of ``to_type`` associated with it (if any)."""
        first: dict[str, str] = {}
        for chunk in _chunks(list(ids), ASSOCIATION_BATCH):
            body = {"inputs": [{"id": i} for i in chunk]}
            answer = self._call(
                f"{from_type} to {to_type} associations",
                lambda body=body: self._associations.get_page(
                    from_type, to_type, batch_input_public_fetch_associations_batch_request=body, **self._raw
                ),
                _associations,
            )
            for result in answer["results"]:
                targets = [str(t["toObjectId"]) for t in result["to"]]
                if targets:
                    first[str(result["from"]["id"])] = min(targets, key=_id_order)
        return first

    def close(self) -> None:
        for api in (self._search, self._basic, self._batch, self._owners, self._pipelines, self._associations):
            api.api_client.rest_client.pool_manager.clear()

    # -- one request -----------------------------------------------------------------------
    def _call(self, what: str, request: Callable[[], Any], check: Check) -> dict[str, Any]:
        def once() -> dict[str, Any]:
            body = _fetch(request, what)
            problem = check(body) if isinstance(body, dict) else "not a JSON object"
            if problem:
                raise TransientError(f"HubSpot sent an unreadable answer: {problem}", request=what)
            return body

        return retry.call(once, self.policy, what=what)


def _fetch(request: Callable[[], Any], what: str) -> Any:
    try:
        response = request()
        try:
            data = response.data
        finally:
            response.release_conn()
    except API_EXCEPTIONS as exc:
        raise _translate(exc, what) from None
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise TransientError(f"HubSpot connection problem: {type(exc).__name__}", request=what) from None
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        raise TransientError(f"HubSpot sent an unreadable answer: not JSON ({len(data)} bytes)", request=what) from None


def _translate(exc: Any, what: str) -> Exception:
    """An SDK ApiException to our error, by what the engine should do about it."""
    status = exc.status or 0
    body = _error_body(exc.body)
    message = str(body.get("message") or exc.reason or "")[:300]
    category = body.get("category")
    if status == 401:
        return AuthError(
            f"HubSpot refused the access token ({category or 'HTTP 401'}); "
            "set a valid private app token in SALESPULSE_HUBSPOT__ACCESS_TOKEN",
            request=what,
        )
    if status == 429:
        if body.get("policyName") == "DAILY":
            return StreamFailed(
                "HubSpot's daily API limit is used up; the next run after midnight (portal time) resumes from the "
                "stored cursor",
                request=what,
            )
        return RateLimited(
            f"HubSpot rate limit ({body.get('policyName') or 'HTTP 429'})", retry_after=_wait(exc), request=what
        )
    if status == 0 or status >= 500:
        return TransientError(f"HubSpot answered {status or 'nothing usable'}: {message[:120]}", request=what)
    label = f"{status} {category}" if category else str(status)
    if status == 403:
        return Forbidden(
            f"HubSpot refused {what} ({label}): {message}; give the private app the read scope this object needs "
            "(crm.objects.*.read, crm.objects.owners.read) in HubSpot's private app settings"
        )
    return StreamFailed(
        f"HubSpot rejected {what} ({label}): {message}; check hubspot.base_url (https://api.hubapi.com) and that "
        "the portal has this object; if both are right, report it with this message"
    )


def _error_body(raw: Any) -> dict[str, Any]:
    try:
        body = orjson.loads(raw) if raw else {}
    except (orjson.JSONDecodeError, TypeError):
        return {}
    return body if isinstance(body, dict) else {}


def _wait(exc: Any) -> float:
    """Seconds to wait: Retry-After, else the rolling window's length, else one second."""
    headers = exc.headers or {}
    for name, scale in (("Retry-After", 1.0), ("X-HubSpot-RateLimit-Interval-Milliseconds", 0.001)):
        value = headers.get(name)
        try:
            return max(float(value) * scale, 0.0)
        except (TypeError, ValueError):
            continue
    return DEFAULT_WAIT_S


def _chunks(ids: list[str], size: int) -> Iterable[list[str]]:
    return (ids[i : i + size] for i in range(0, len(ids), size))


def _id_order(object_id: str) -> tuple[int, int | str]:
    return (0, int(object_id)) if object_id.isdigit() else (1, object_id)


def _next_after(answer: dict[str, Any]) -> str | None:
    paging = answer.get("paging") or {}
    return str(paging["next"]["after"]) if paging.get("next") else None


# -- answer checks: None when the answer has the shape HubSpot documents, else the problem ----
def _results(body: dict[str, Any], required: Callable[[Any], bool], what: str) -> str | None:
    results = body.get("results")
    if not isinstance(results, list):
        return "no results list"
    if not all(isinstance(r, dict) and required(r) for r in results):
        return f"a result without {what}"
    paging = body.get("paging")
    if paging is not None:
        after = (paging.get("next") or {}).get("after") if isinstance(paging, dict) else None
        if after is None:
            return "paging without next.after"
    return None


def _has_id(r: dict[str, Any]) -> bool:
    return isinstance(r.get("id"), str | int)


def _objects(body: dict[str, Any]) -> str | None:
    return _results(body, lambda r: _has_id(r) and isinstance(r.get("properties"), dict), "id and properties")


def _histories(body: dict[str, Any]) -> str | None:
    def ok(r: dict[str, Any]) -> bool:
        history = r.get("propertiesWithHistory") or {}
        return (
            _has_id(r)
            and isinstance(history, dict)
            and all(
                isinstance(entries, list) and all(isinstance(e, dict) and "timestamp" in e for e in entries)
                for entries in history.values()
            )
        )

    return _results(body, ok, "id and a well-formed propertiesWithHistory")


def _owners(body: dict[str, Any]) -> str | None:
    return _results(body, _has_id, "id")


def _pipelines(body: dict[str, Any]) -> str | None:
    def ok(p: dict[str, Any]) -> bool:
        stages = p.get("stages")
        return _has_id(p) and isinstance(stages, list) and all(isinstance(s, dict) and _has_id(s) for s in stages)

    return _results(body, ok, "id and stages")


def _currency(body: dict[str, Any]) -> str | None:
    return None if isinstance(body.get("currencyCode"), str) else "no currencyCode"


def _exchange_rates(body: dict[str, Any]) -> str | None:
    return _results(body, lambda r: isinstance(r.get("fromCurrencyCode"), str), "fromCurrencyCode")


def _associations(body: dict[str, Any]) -> str | None:
    def ok(r: dict[str, Any]) -> bool:
        source, to = r.get("from"), r.get("to")
        return (
            isinstance(source, dict)
            and _has_id(source)
            and isinstance(to, list)
            and all(isinstance(t, dict) and isinstance(t.get("toObjectId"), str | int) for t in to)
        )

    return _results(body, ok, "from.id and to[].toObjectId")
