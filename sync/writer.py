"""Writing one page: dialect-native upserts, deletions, quarantine, the cursor.

All of it runs inside the caller's transaction, so a page and the cursor that covers it
commit together or not at all.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import Connection, Table, bindparam, delete, update
from sqlalchemy.dialects import postgresql, sqlite

from connectors.base import Rejected
from models.tables import quarantine, sync_state


def _insert(conn: Connection, table: Table):
    module = postgresql if conn.dialect.name == "postgresql" else sqlite
    return module.insert(table)


def upsert(
    conn: Connection, table: Table, rows: Sequence[dict[str, Any]], conflict: Sequence[str], columns: Sequence[str]
) -> None:
    """INSERT ... ON CONFLICT DO UPDATE, one executemany for the whole batch."""
    if not rows:
        return
    stmt = _insert(conn, table)
    stmt = stmt.on_conflict_do_update(index_elements=list(conflict), set_={c: stmt.excluded[c] for c in columns})
    conn.execute(stmt, list(rows))


def mark_deleted(conn: Connection, table: Table, ids_and_times: Iterable[tuple[str, datetime]], now: datetime) -> int:
    params = [{"b_id": i, "b_at": at, "b_now": now} for i, at in ids_and_times]
    if not params:
        return 0
    stmt = (
        update(table)
        .where(table.c.id == bindparam("b_id"), table.c.deleted_at.is_(None))
        .values(deleted_at=bindparam("b_at"), synced_at=bindparam("b_now"))
    )
    return conn.execute(stmt, params).rowcount or 0


def quarantine_records(conn: Connection, source: str, stream: str, items: Sequence[Rejected], now: datetime) -> None:
    if not items:
        return
    rows = {
        item.external_id: {
            "source": source,
            "stream": stream,
            "external_id": item.external_id,
            "payload": orjson.dumps(dict(item.payload), default=str).decode(),
            "reason": item.reason,
            "first_seen_at": now,
            "last_seen_at": now,
            "times_seen": 1,
        }
        for item in items
    }
    stmt = _insert(conn, quarantine)
    stmt = stmt.on_conflict_do_update(
        index_elements=["source", "stream", "external_id"],
        set_={
            "payload": stmt.excluded.payload,
            "reason": stmt.excluded.reason,
            "last_seen_at": stmt.excluded.last_seen_at,
            "times_seen": quarantine.c.times_seen + 1,
        },
    )
    conn.execute(stmt, list(rows.values()))


def release_from_quarantine(conn: Connection, source: str, stream: str, external_ids: Iterable[str]) -> int:
    ids = list(external_ids)
    if not ids:
        return 0
    stmt = delete(quarantine).where(
        quarantine.c.source == source, quarantine.c.stream == stream, quarantine.c.external_id.in_(ids)
    )
    return conn.execute(stmt).rowcount or 0


def save_cursor(conn: Connection, source: str, stream: str, cursor_json: str, now: datetime) -> None:
    upsert(
        conn,
        sync_state,
        [{"source": source, "stream": stream, "cursor": cursor_json, "updated_at": now}],
        ("source", "stream"),
        ("cursor", "updated_at"),
    )
