"""Cursor arithmetic: pure functions over plain data, tested without HTTP or a database.

The rules (as dlt's ``Incremental`` does it):
- the lower bound is inclusive, minus a small lookback for records that commit late;
- the cursor keeps the primary keys that carry exactly its value, so the next run can drop
  those re-read boundary records instead of counting them twice;
- a cursor is never later than the sync's start: a record stamped after the start (clock
  skew, or written while we read) is read again next time rather than risked.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import orjson


@dataclass(frozen=True)
class Cursor:
    value: datetime | None = None
    ids: frozenset[str] = field(default_factory=frozenset)

    def to_json(self) -> str:
        return orjson.dumps({"value": self.value.isoformat() if self.value else None, "ids": sorted(self.ids)}).decode()

    @classmethod
    def from_json(cls, text: str | None) -> Cursor:
        if not text:
            return cls()
        data = orjson.loads(text)
        value = datetime.fromisoformat(data["value"]) if data.get("value") else None
        return cls(value, frozenset(data.get("ids", ())))


def lower_bound(cursor: Cursor, lookback: timedelta) -> datetime | None:
    """Where the next incremental read starts (inclusive); None means from the beginning."""
    return None if cursor.value is None else cursor.value - lookback


def is_boundary_duplicate(cursor: Cursor, external_id: str, value: datetime | None) -> bool:
    """True for a record the last run already stored with exactly this replication value."""
    return value is not None and value == cursor.value and external_id in cursor.ids


def advance(cursor: Cursor, seen: Iterable[tuple[str, datetime | None]], started_at: datetime) -> Cursor:
    """The cursor after a committed page of (id, replication value) pairs."""
    value, ids = cursor.value, set(cursor.ids)
    for external_id, stamp in seen:
        if stamp is None:
            continue
        if value is None or stamp > value:
            value, ids = stamp, {external_id}
        elif stamp == value:
            ids.add(external_id)
    if value is not None and value > started_at:
        return Cursor(started_at, frozenset())
    return Cursor(value, frozenset(ids))
