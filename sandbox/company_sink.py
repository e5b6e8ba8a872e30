"""Batched writes for the generator: rows reach the store a few thousand at a time.

The generator never holds a table in memory: each row is handed to the sink as soon as it
is made, and the sink writes a table's buffer when it is full. The sink also hands out the
per-table ``seq`` numbers, so ids follow generation order.
"""

from __future__ import annotations

from typing import Any

from sandbox.company_catalog import ACTIVITY_TYPES, SUBJECTS, Rng, cumulative, iso_ms, record_id
from sandbox.store import Store

BATCH_ROWS = 5_000

_TYPE_TABLES = {crm: (kinds, cumulative(weights)) for crm, (kinds, weights) in ACTIVITY_TYPES.items()}


class Sink:
    def __init__(self, store: Store, batch_rows: int = BATCH_ROWS) -> None:
        self.store = store
        self.batch_rows = batch_rows
        self._rows: dict[str, list[dict[str, Any]]] = {}
        self._seq: dict[tuple[str, str], int] = {}

    def continue_after_existing(self, crm: str, table: str) -> None:
        """Number new rows after those already in the store (for additions between syncs)."""
        self._seq[(crm, table)] = self.store.next_seq(table, crm) - 1

    def next_seq(self, crm: str, table: str) -> int:
        return self.reserve(crm, table, 1)

    def reserve(self, crm: str, table: str, count: int) -> int:
        """The first of ``count`` consecutive seq numbers of ``table``."""
        first = self._seq.get((crm, table), 0) + 1
        self._seq[(crm, table)] = first + count - 1
        return first

    def add(self, table: str, row: dict[str, Any]) -> None:
        rows = self._rows.setdefault(table, [])
        rows.append(row)
        if len(rows) >= self.batch_rows:
            self.store.insert_many(table, rows)
            self._rows[table] = []

    def flush(self) -> None:
        for table, rows in self._rows.items():
            self.store.insert_many(table, rows)
            self._rows[table] = []

    def activity(
        self, rng: Rng, crm: str, owner_id: str, occurred_ms: int, deal_id: str | None, lead_id: str | None
    ) -> str:
        """Log one activity of a random type (the CRM's own mix); returns its id."""
        kind = rng.weighted(*_TYPE_TABLES[crm])
        seq = self._seq[(crm, "activities")] = self._seq.get((crm, "activities"), 0) + 1
        stamp = iso_ms(occurred_ms)
        activity_id = record_id(crm, "activities", seq, kind)
        self.add(
            "activities",
            {
                "crm": crm,
                "id": activity_id,
                "seq": seq,
                "type": kind,
                "subject": rng.choice(SUBJECTS[kind]),
                "owner_id": owner_id,
                "deal_id": deal_id,
                "lead_id": lead_id,
                "occurred_at": stamp,
                "created_at": stamp,
                "modified_at": stamp,
                "deleted_at": None,
            },
        )
        return activity_id
