"""Writing one page: dialect-native upserts, deletions, quarantine, the cursor.

All of it runs inside the caller's transaction, so a page and the cursor that covers it
commit together or not at all.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import lru_cache
from operator import itemgetter
from typing import Any

import orjson
from sqlalchemy import (
    Connection,
    Date,
    Dialect,
    Float,
    Numeric,
    Table,
    bindparam,
    delete,
    inspect,
    literal,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.schema import CreateIndex, DropIndex

from connectors.base import Rejected
from models.schema_lock import lock_schema_changes
from models.tables import activities, close_date_changes, opportunities, quarantine, stage_changes, sync_state
from models.types import UTCDateTime


def _insert(conn: Connection, table: Table):
    module = postgresql if conn.dialect.name == "postgresql" else sqlite
    return module.insert(table)


def _sqlite_instant(value: datetime) -> str:
    # The text SQLAlchemy's SQLite DATETIME stores (naive UTC, always six fraction digits),
    # so rows written here and by SQLAlchemy compare and parse alike.
    if value.utcoffset():
        value = value.astimezone(UTC)
    return value.isoformat(" ", "microseconds")[:26]


def _sqlite_converter(column_type: Any) -> Callable[[Any], Any] | None:
    """What sqlite3 cannot bind as it comes (bools and floats it can)."""
    if isinstance(column_type, UTCDateTime):
        return _sqlite_instant
    if isinstance(column_type, Numeric) and not isinstance(column_type, Float):
        return float
    if isinstance(column_type, Date):
        return date.isoformat
    return None


@dataclass(frozen=True)
class _UpsertPlan:
    sql: str
    columns: tuple[str, ...]
    conversions: tuple[tuple[int, Callable[[Any], Any]], ...]  # (position, converter) where needed
    positional: bool

    def parameters(self, rows: Sequence[dict[str, Any]]) -> list[Any]:
        if not self.positional:
            return [{c: row[c] for c in self.columns} for row in rows]
        get = itemgetter(*self.columns)
        conversions = self.conversions
        converted: dict[Any, Any] = {}  # values repeat (synced_at on every row, shared dates)
        params = []
        for row in rows:
            values = list(get(row))
            for position, convert in conversions:
                value = values[position]
                if value is not None:
                    text = converted.get(value)
                    if text is None:
                        text = converted[value] = convert(value)
                    values[position] = text
            params.append(tuple(values))
        return params


@lru_cache(maxsize=64)
def _plan(
    table: Table, conflict: tuple[str, ...], update: tuple[str, ...], dialect: Dialect, skip: tuple[str, ...]
) -> _UpsertPlan:
    """The compiled statement and per-column converters for one table, made once.

    Why not plain ``conn.execute(stmt, rows)``: SQLAlchemy's per-row parameter processing
    cost more than the database itself (profiled at 60 % of a full sync).
    """
    module = postgresql if dialect.name == "postgresql" else sqlite
    columns = tuple(
        c.name for c in table.columns if not (c.primary_key and c.autoincrement is True) and c.name not in skip
    )
    stmt = module.insert(table).values({c: bindparam(c) for c in columns})
    stmt = stmt.on_conflict_do_update(index_elements=list(conflict), set_={c: stmt.excluded[c] for c in update})
    positional = dialect.name == "sqlite"
    conversions: list[tuple[int, Callable[[Any], Any]]] = []
    if positional:
        for position, name in enumerate(columns):
            convert = _sqlite_converter(table.c[name].type)
            if convert is not None:
                conversions.append((position, convert))
    return _UpsertPlan(str(stmt.compile(dialect=dialect)), columns, tuple(conversions), positional)


def upsert(
    conn: Connection,
    table: Table,
    rows: Sequence[dict[str, Any]],
    conflict: Sequence[str],
    columns: Sequence[str],
    skip: Sequence[str] = (),
) -> None:
    """INSERT ... ON CONFLICT DO UPDATE, one executemany for the whole batch; ``skip``: columns left alone."""
    if not rows:
        return
    plan = _plan(table, tuple(conflict), tuple(columns), conn.dialect, tuple(skip))
    conn.exec_driver_sql(plan.sql, plan.parameters(rows))


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


# Rows that belong to a deal and go when it goes (Salesforce deletes a deal's history and
# activities with it; the warehouse does the same for HubSpot's archived deals).
DEAL_CHILDREN = (stage_changes, close_date_changes, activities)


def _deal_deleted_at(table: Table):
    o = opportunities
    return select(o.c.deleted_at).where(o.c.id == table.c.opportunity_id).scalar_subquery()


def cascade_from_deals(conn: Connection, source: str, since: datetime, now: datetime) -> int:
    """Soft-delete the children of ``source``'s deals deleted (written) at or after ``since``.

    Driven from the deals (``synced_at`` is indexed) into each child table's
    ``opportunity_id`` index, so it costs what was deleted, not the table size.
    """
    o = opportunities
    gone = select(o.c.id).where(o.c.source == source, o.c.synced_at >= since, o.c.deleted_at.is_not(None))
    total = 0
    for table in DEAL_CHILDREN:
        stmt = (
            update(table)
            .where(table.c.opportunity_id.in_(gone), table.c.deleted_at.is_(None))
            .values(deleted_at=_deal_deleted_at(table), synced_at=now)
        )
        total += conn.execute(stmt).rowcount or 0
    return total


def cascade_deletions(conn: Connection, ids_and_times: Sequence[tuple[str, datetime]], now: datetime) -> int:
    """Soft-delete the children of deals the CRM just reported deleted, by deal id.

    By id rather than through the deal's row: a deal that sat in quarantine has no row,
    but its activities may (they were valid on their own).
    """
    if not ids_and_times:
        return 0
    params = [{"b_id": i, "b_at": at, "b_now": now} for i, at in ids_and_times]
    total = 0
    for table in DEAL_CHILDREN:
        stmt = (
            update(table)
            .where(table.c.opportunity_id == bindparam("b_id"), table.c.deleted_at.is_(None))
            .values(deleted_at=bindparam("b_at"), synced_at=bindparam("b_now"))
        )
        total += conn.execute(stmt, params).rowcount or 0
    return total


def inherit_deal_deletion(conn: Connection, table: Table, ids: Sequence[str]) -> int:
    """Soft-delete just-written rows (by id) whose deal is already deleted: no active child of a gone deal."""
    if not ids or table not in DEAL_CHILDREN:
        return 0
    o = opportunities
    # EXISTS by primary key, per written row: an IN over all deleted deals may scan the deals. One
    # executemany by id: an expanding IN of 5,000 ids cost SQLAlchemy 1.3 s a page, SQLite 0.08 s.
    deal_gone = select(o.c.id).where(o.c.id == table.c.opportunity_id, o.c.deleted_at.is_not(None)).exists()
    stmt = (
        update(table)
        .where(table.c.id == bindparam("b_id"), table.c.deleted_at.is_(None), deal_gone)
        .values(deleted_at=_deal_deleted_at(table))
    )
    return conn.execute(stmt, [{"b_id": i} for i in ids]).rowcount or 0


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


def begin_bulk_load(conn: Connection, table: Table) -> bool:
    """Drop the secondary indexes of an empty table; True if this is a bulk load.

    Loading a million deals into a table with five secondary indexes is several times
    slower than building the indexes once afterwards. The indexes come back in
    :func:`ensure_indexes`, which also runs at every stream start: a crash during a
    bulk load leaves no table without its indexes for longer than until the next run.
    """
    if not table.indexes:
        return False
    # The lock before the table is read: a reader holds its lock on the table to the end of the
    # transaction, and another process's DROP INDEX, holding the schema lock, would wait for it.
    lock_schema_changes(conn)
    if conn.execute(select(literal(1)).select_from(table).limit(1)).first() is not None:
        return False
    for index in table.indexes:
        conn.execute(DropIndex(index, if_exists=True))
    return True


def ensure_indexes(conn: Connection, table: Table) -> None:
    """Create the table's missing secondary indexes. Another process's sync may be dropping or
    creating them too (the sources load the same tables): under the schema lock, and ``IF NOT
    EXISTS``, so neither fails on the other's DDL. The lock comes before the indexes are read:
    SQLAlchemy reads a partial index's definition in a second query, and an index dropped in
    between failed that read (a TypeError on SQLite)."""
    lock_schema_changes(conn)
    present = {ix["name"] for ix in inspect(conn).get_indexes(table.name)}
    missing = [index for index in table.indexes if index.name not in present]
    for index in missing:
        conn.execute(CreateIndex(index, if_not_exists=True))
