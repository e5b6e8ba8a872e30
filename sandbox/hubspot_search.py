"""Translate a CRM search request body into SQL over the sandbox store.

Follows https://developers.hubspot.com/docs/api/crm/search: filterGroups are OR-ed, the
filters inside a group AND-ed; values arrive as strings; datetime properties accept
epoch milliseconds or ISO-8601; ``hs_object_id`` compares numerically. Limits are the
ones HubSpot enforces since 26 Aug 2024 (5 groups, 10 filters per group, 25 in all —
developers.hubspot.com/changelog/breaking-change-expanded-filtering-capabilities-and-error-messaging-in-hubspots-search-api),
one sort, 200 records per page, and 10,000 results per query at most.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from typing import Any

from sandbox.hubspot_objects import HubSpotError, Kind, ObjectSpec, Prop
from sandbox.store import iso_utc

MAX_GROUPS = 5
MAX_FILTERS_PER_GROUP = 10
MAX_FILTERS = 25
MAX_LIMIT = 200
DEFAULT_LIMIT = 10
MAX_RESULTS = 10_000

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_COMPARISONS = {"EQ": "=", "NEQ": "IS NOT", "LT": "<", "LTE": "<=", "GT": ">", "GTE": ">="}


def invalid(message: str) -> HubSpotError:
    return HubSpotError(HTTPStatus.BAD_REQUEST, message)


@dataclass(frozen=True)
class SearchQuery:
    where: str
    params: list[Any]
    order_by: str
    limit: int
    offset: int
    properties: list[str]


def parse_search(spec: ObjectSpec, body: Any, stage_ids: frozenset[str]) -> SearchQuery:
    if not isinstance(body, dict):
        raise invalid("Invalid input JSON: expected an object")
    limit = _int_field(body, "limit", DEFAULT_LIMIT)
    if not 0 <= limit <= MAX_LIMIT:
        raise invalid(f"limit must be between 0 and {MAX_LIMIT}, got {limit}")
    offset = _int_field(body, "after", 0)
    if offset < 0:
        raise invalid(f"after must not be negative, got {offset}")
    if offset + limit > MAX_RESULTS:
        raise invalid(
            f"The search API returns at most {MAX_RESULTS} results per query; "
            f"after ({offset}) + limit ({limit}) goes past it. Narrow the filters instead of paging further."
        )
    where, params = _where(spec, body, stage_ids)
    properties = body.get("properties") or []
    if not isinstance(properties, list) or not all(isinstance(p, str) for p in properties):
        raise invalid("properties must be a list of property names")
    return SearchQuery(where, params, _order_by(spec, body.get("sorts"), stage_ids), limit, offset, properties)


def _int_field(body: dict[str, Any], name: str, default: int) -> int:
    raw = body.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except (TypeError, ValueError):
        raise invalid(f"{name} must be an integer, got {raw!r}") from None


def _resolve(spec: ObjectSpec, name: Any, stage_ids: frozenset[str]) -> Prop:
    prop = spec.resolve(name, stage_ids) if isinstance(name, str) else None
    if prop is None:
        raise invalid(f"Property {name!r} does not exist on {spec.name}")
    return prop


def _where(spec: ObjectSpec, body: dict[str, Any], stage_ids: frozenset[str]) -> tuple[str, list[Any]]:
    groups = body.get("filterGroups") or []
    if not isinstance(groups, list) or not all(isinstance(g, dict) for g in groups):
        raise invalid("filterGroups must be a list of objects with filters")
    if len(groups) > MAX_GROUPS:
        raise invalid(f"At most {MAX_GROUPS} filterGroups are allowed, got {len(groups)}")
    counts = [len(g.get("filters") or []) for g in groups]
    if any(n > MAX_FILTERS_PER_GROUP for n in counts) or sum(counts) > MAX_FILTERS:
        raise invalid(f"At most {MAX_FILTERS_PER_GROUP} filters per group and {MAX_FILTERS} in all are allowed")
    params: list[Any] = []
    ored = []
    for group in groups:
        anded = [_filter(spec, f, stage_ids, params) for f in group.get("filters") or []]
        ored.append("(" + (" AND ".join(anded) or "1=1") + ")")
    clauses = ["(" + " OR ".join(ored) + ")"] if ored else []
    query = body.get("query")
    if query:
        props = [_resolve(spec, name, stage_ids) for name in spec.searchable]
        clauses.append("(" + " OR ".join(f"lower({p.sql}) LIKE ?" for p in props) + ")")
        params.extend(f"%{str(query).lower()}%" for _ in props)
    return " AND ".join(clauses) or "1=1", params


def _filter(spec: ObjectSpec, f: Any, stage_ids: frozenset[str], params: list[Any]) -> str:
    if not isinstance(f, dict):
        raise invalid("each filter must be an object")
    prop = _resolve(spec, f.get("propertyName"), stage_ids)
    op = f.get("operator")
    expr = prop.comparable
    if op in _COMPARISONS:
        params.append(_value(prop, f.get("value")))
        return f"{expr} {_COMPARISONS[op]} ?"
    if op == "BETWEEN":
        params.extend((_value(prop, f.get("value")), _value(prop, f.get("highValue"))))
        return f"{expr} BETWEEN ? AND ?"
    if op in ("IN", "NOT_IN"):
        values = f.get("values")
        if not isinstance(values, list) or not values:
            raise invalid(f"{op} on {f.get('propertyName')!r} needs a non-empty values list")
        params.extend(_value(prop, v) for v in values)
        marks = ", ".join("?" for _ in values)
        return f"{expr} IN ({marks})" if op == "IN" else f"({expr} IS NULL OR {expr} NOT IN ({marks}))"
    if op in ("HAS_PROPERTY", "NOT_HAS_PROPERTY"):
        return f"NULLIF({prop.sql}, '') IS {'NOT ' if op == 'HAS_PROPERTY' else ''}NULL"
    if op in ("CONTAINS_TOKEN", "NOT_CONTAINS_TOKEN"):
        token = str(_required(f.get("value"))).lower().replace("*", "%")
        params.append(f"%{token}%")
        return f"lower({prop.sql}) LIKE ?" if op == "CONTAINS_TOKEN" else f"COALESCE(lower({prop.sql}) NOT LIKE ?, 1)"
    raise invalid(f"Unknown filter operator {op!r}")


def _required(raw: Any) -> Any:
    if raw is None:
        raise invalid("filter value is missing")
    return raw


def _value(prop: Prop, raw: Any) -> Any:
    """A filter value in the form the property's SQL expression compares with."""
    text = str(_required(raw)).lower() if isinstance(raw, bool) else str(_required(raw))
    try:
        if prop.kind is Kind.NUMBER:
            return float(text)
        if prop.kind is Kind.ID:
            return int(text)
    except ValueError:
        raise invalid(f"{text!r} is not a valid number") from None
    if prop.kind is Kind.DATETIME:
        return datetime_value(text)
    if prop.kind is Kind.BOOL:
        return text.lower()
    return text


def datetime_value(text: str) -> str:
    """Epoch milliseconds or ISO-8601 (naive means UTC) as the store's ISO text."""
    if text.lstrip("-").isdigit():
        return iso_utc(_EPOCH + timedelta(milliseconds=int(text)))
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise invalid(f"{text!r} is neither epoch milliseconds nor an ISO-8601 datetime") from None
    return iso_utc(moment if moment.tzinfo else moment.replace(tzinfo=UTC))


def _order_by(spec: ObjectSpec, sorts: Any, stage_ids: frozenset[str]) -> str:
    """ORDER BY for the one sort HubSpot honours; ties (and no sort) go by id, ascending."""
    if not sorts:
        return "t.seq"
    if not isinstance(sorts, list) or len(sorts) > 1:
        raise invalid("Only one sort is allowed")
    sort = sorts[0]
    if isinstance(sort, str):
        name, descending = sort.removeprefix("-"), sort.startswith("-")
    elif isinstance(sort, dict):
        name, direction = sort.get("propertyName"), sort.get("direction", "ASCENDING")
        if direction not in ("ASCENDING", "DESCENDING"):
            raise invalid(f"sort direction must be ASCENDING or DESCENDING, got {direction!r}")
        descending = direction == "DESCENDING"
    else:
        raise invalid("a sort is a property name or {propertyName, direction}")
    prop = _resolve(spec, name, stage_ids)
    return f"{prop.comparable} {'DESC' if descending else 'ASC'}, t.seq"
