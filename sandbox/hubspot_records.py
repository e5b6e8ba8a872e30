"""Read CRM object rows out of the store in HubSpot's record shape.

A record is ``{"id", "properties", "createdAt", "updatedAt", "archived"}`` (plus
``archivedAt`` when archived and ``propertiesWithHistory`` when asked), the shape the
SDK's ``SimplePublicObject`` requires (https://developers.hubspot.com/docs/api/crm/objects).
Every property value is a string or null, computed in SQL from the property map.

History: ``dealstage``, ``amount`` and ``closedate`` come from ``deal_history`` (newest
first, like HubSpot); the value a deal was created with is dated at its creation. Any
other property's history is its current value, dated at the last modification.
"""

from __future__ import annotations

import sqlite3
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from sandbox.hubspot_objects import ObjectSpec, Prop

# HubSpot deal property -> deal_history.field
HISTORY_FIELDS = {"dealstage": "stage", "amount": "amount", "closedate": "close_date"}
_SOURCE_TYPE = "CRM_UI"


def split_names(values: list[str]) -> list[str]:
    """Property names from repeated and/or comma-separated query parameters."""
    return [name for value in values for name in value.split(",") if name]


@dataclass(frozen=True)
class Selection:
    """Which properties a request returns, and the SQL that reads them."""

    spec: ObjectSpec
    names: list[str]
    history: list[str]
    columns: dict[str, Prop]

    @classmethod
    def build(
        cls, spec: ObjectSpec, requested: list[str], with_history: list[str], stage_ids: frozenset[str]
    ) -> Selection:
        # Unknown property names are ignored, as HubSpot does on reads.
        wanted = dict.fromkeys([*(requested or spec.defaults), *spec.always])
        columns = {n: p for n in [*wanted, *with_history] if (p := spec.resolve(n, stage_ids)) is not None}
        names = [n for n in wanted if n in columns]
        history = [n for n in dict.fromkeys(with_history) if n in columns]
        return cls(spec, names, history, columns)

    def fetch(
        self, conn: sqlite3.Connection, where: str, params: list[Any], order_by: str, limit: int, offset: int = 0
    ) -> list[sqlite3.Row]:
        cols = ", ".join(f'{prop.sql} AS "p{i}"' for i, prop in enumerate(self.columns.values()))
        sql = (
            f"SELECT t.id, t.seq, t.created_at, t.modified_at, t.deleted_at{', ' + cols if cols else ''} "
            f"FROM {self.spec.table} t WHERE t.crm = 'hubspot' AND {self.spec.scope} AND ({where}) "
            f"ORDER BY {order_by} LIMIT ? OFFSET ?"
        )
        return conn.execute(sql, (*params, limit, offset)).fetchall()

    def count(self, conn: sqlite3.Connection, where: str, params: list[Any]) -> int:
        sql = f"SELECT COUNT(*) FROM {self.spec.table} t WHERE t.crm = 'hubspot' AND {self.spec.scope} AND ({where})"
        return conn.execute(sql, params).fetchone()[0]

    def records(self, conn: sqlite3.Connection, rows: list[sqlite3.Row]) -> list[dict[str, Any]]:
        index = {name: f"p{i}" for i, name in enumerate(self.columns)}
        history = self._history(conn, rows, index) if self.history else {}
        out = []
        for row in rows:
            record: dict[str, Any] = {
                "id": row["id"],
                "properties": {name: _text(row[index[name]]) for name in self.names},
                "createdAt": row["created_at"],
                "updatedAt": row["modified_at"],
                "archived": row["deleted_at"] is not None,
            }
            if row["deleted_at"] is not None:
                record["archivedAt"] = row["deleted_at"]
            if self.history:
                record["propertiesWithHistory"] = history[row["id"]]
            out.append(record)
        return out

    def _history(
        self, conn: sqlite3.Connection, rows: list[sqlite3.Row], index: dict[str, str]
    ) -> dict[str, dict[str, list[dict[str, str]]]]:
        changes: dict[tuple[str, str], list[sqlite3.Row]] = defaultdict(list)
        tracked = [HISTORY_FIELDS[n] for n in self.history if n in HISTORY_FIELDS]
        if self.spec.name == "deals" and tracked and rows:
            ids = [row["id"] for row in rows]
            sql = (
                "SELECT deal_id, field, old_value, new_value, changed_at FROM deal_history INDEXED BY ix_hist_deal "
                f"WHERE crm = 'hubspot' AND deal_id IN ({', '.join('?' for _ in ids)}) "
                f"AND field IN ({', '.join('?' for _ in tracked)}) ORDER BY changed_at, seq"
            )
            for change in conn.execute(sql, (*ids, *tracked)):
                changes[(change["deal_id"], change["field"])].append(change)
        result: dict[str, dict[str, list[dict[str, str]]]] = {}
        for row in rows:
            per_property = {}
            for name in self.history:
                current = row[index[name]]
                field = HISTORY_FIELDS.get(name) if self.spec.name == "deals" else None
                if field is not None:
                    entries = _entries(changes[(row["id"], field)], current, row["created_at"])
                else:
                    entries = [] if current is None else [_entry(current, row["modified_at"])]
                if entries:
                    per_property[name] = entries
            result[row["id"]] = per_property
        return result


def _entries(changes: list[sqlite3.Row], current: Any, created_at: str) -> list[dict[str, str]]:
    """Newest-first values of one property, from its change rows (oldest first)."""
    if not changes:
        return [] if current is None else [_entry(current, created_at)]
    entries = [_entry(c["new_value"], c["changed_at"]) for c in changes]
    if changes[0]["old_value"] is not None:
        entries.insert(0, _entry(changes[0]["old_value"], created_at))
    return entries[::-1]


def _entry(value: Any, timestamp: str) -> dict[str, str]:
    # A cleared value is an empty string in HubSpot's history (the SDK refuses null).
    return {"value": "" if value is None else str(value), "timestamp": timestamp, "sourceType": _SOURCE_TYPE}


def _text(value: Any) -> str | None:
    return None if value is None else str(value)
