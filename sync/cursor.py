"""Cursor arithmetic: pure functions over plain data, tested without HTTP or a database.

The rules (as dlt's ``Incremental`` does it):
- the lower bound is inclusive, minus a small lookback for records that commit late;
- the cursor keeps the primary keys that carry exactly its value, so the next run can drop
  those re-read boundary records instead of counting them twice;
- a cursor is never later than the sync's start: a record stamped after the start (clock
  skew, or written while we read) is read again next time rather than risked;
- the ids at the cursor's stamp are bounded (``MAX_BOUNDARY_IDS``, as dlt warns past a
  threshold): past it they are dropped with a warning, and the next run re-reads those
  records, which upserts make harmless, instead of storing an ever-growing list;
- pages come in ascending order within a run (:func:`in_order`, as the Singer SDK's
  sorted-stream check): a connector that breaks it fails its stream instead of letting a
  cursor pass records it never stored. Older stamps than the cursor are normal (the
  lookback re-reads them), so the order is checked per run, not against the cursor.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import orjson

from models.errors import FatalError

log = logging.getLogger("salespulse.sync")

MAX_BOUNDARY_IDS = 10_000


class OutOfOrder(FatalError):
    """A stream served a record older than one it served before it in the same run."""


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
    if len(ids) > MAX_BOUNDARY_IDS:
        log.warning(
            "%d records share the cursor stamp %s; their ids are not kept (limit %d): the next run reads them "
            "again (upserts make that harmless); a CRM mass update usually explains it",
            len(ids),
            value.isoformat() if value else None,
            MAX_BOUNDARY_IDS,
        )
        ids = set()
    return Cursor(value, frozenset(ids))


def in_order(last: datetime | None, seen: Iterable[tuple[str, datetime | None]], stream: str) -> datetime | None:
    """The latest stamp after these records, or OutOfOrder if one is older than a record before it."""
    for external_id, stamp in seen:
        if stamp is None:
            continue
        if last is not None and stamp < last:
            raise OutOfOrder(
                f"record {external_id} has replication stamp {stamp.isoformat()} after a record stamped "
                f"{last.isoformat()}: the stream must serve records in ascending order (a connector bug); nothing of "
                "this batch was stored and the cursor stays at the last committed batch; report it with this message",
                stream=stream,
            )
        last = stamp
    return last
