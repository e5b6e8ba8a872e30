"""Salesforce field values to Python values, and Bulk API CSV cells to what REST sends.

REST answers JSON (numbers, booleans, nulls, nested relationship records); a Bulk API 2.0
job answers CSV text. Both become the same raw records here so the streams map one shape.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, date, datetime, time
from typing import Any

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


def related(raw: dict[str, Any], field: str, prefix: str) -> str | None:
    """A polymorphic lookup (WhatId / WhoId) when it points at the object with this key prefix."""
    value = raw.get(field)
    return value if isinstance(value, str) and value.startswith(prefix) else None


def soql_datetime(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def midnight(value: Any) -> Any:
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


def from_csv(row: Mapping[str, str], types: Mapping[str, str]) -> dict[str, Any]:
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
