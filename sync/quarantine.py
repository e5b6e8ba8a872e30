"""Quarantine bookkeeping the engine does around each stream: release, stale marks, reasons.

Quarantine holds records the warehouse could not use. Some of them become usable without
the CRM changing: a rep synced later, a stage created, a rate added. The incremental read
never returns to them, so at the start of each stream's run their stored payloads are
checked again against today's reps, stages and rates, and those now valid are released.

A record that *turns* invalid leaves its last good version in the warehouse; that row is
marked stale (``quarantine_id``) so rules do not treat it as current.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

import orjson
from pydantic import ValidationError
from sqlalchemy import Connection, Engine, select, update

from models.tables import quarantine, quotas
from sync.rows import Lookups, StreamTable, Unusable, to_row, warehouse_id

_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")
_WITH_DIGITS = re.compile(r"[\w.:+-]*\d[\w.:+-]*")


def reason_group(reason: str) -> str:
    """A reason without its particulars (ids, values), so that like reasons count together."""
    return _WITH_DIGITS.sub("…", _QUOTED.sub("'…'", reason))


def top_reasons(reasons: Counter[str], limit: int = 3) -> str:
    return "; ".join(f"{n:,} x {reason}" for reason, n in reasons.most_common(limit))


def fixed_records(
    engine: Engine, source: str, stream: str, spec: StreamTable, lookups: Lookups, now: datetime, size: int
) -> Iterator[list[tuple[str, dict[str, Any]]]]:
    """Quarantined records of the stream that are valid today, as (external_id, row) pages.

    Only records the connector had already mapped (stored as the normalized record) can be
    checked here; a payload the CRM sent malformed stays until the CRM sends it again.
    """
    last_id = 0
    while True:
        with engine.connect() as conn:  # not held open while the caller writes
            entries = conn.execute(
                select(quarantine.c.id, quarantine.c.external_id, quarantine.c.payload)
                .where(quarantine.c.source == source, quarantine.c.stream == stream, quarantine.c.id > last_id)
                .order_by(quarantine.c.id)
                .limit(size)
            ).all()
        if not entries:
            return
        last_id = entries[-1].id
        page = []
        for entry in entries:
            try:
                record = spec.record_model.model_validate(orjson.loads(entry.payload))
                page.append((entry.external_id, to_row(spec, record, lookups, now)))
            except (ValidationError, Unusable, orjson.JSONDecodeError):
                continue
        if page:
            yield page


def mark_stale(
    conn: Connection, spec: StreamTable, source: str, stream: str, external_ids: Sequence[str], now: datetime
) -> int:
    """Point the rows of these records at their quarantine entry: their newer version is invalid.

    ``synced_at`` moves too: what the sync derives from the rows it wrote (the stage rollups) must see it.
    """
    if not external_ids or not spec.can_be_stale:
        return 0
    table = spec.table
    entry = (
        select(quarantine.c.id)
        .where(
            quarantine.c.source == source,
            quarantine.c.stream == stream,
            quarantine.c.external_id == table.c.external_id,
        )
        .scalar_subquery()
    )
    if table is quotas:
        where = [table.c.source == source, table.c.external_id.in_(list(external_ids))]
    else:  # by primary key: no scan of a million deals
        where = [table.c.id.in_([warehouse_id(source, e) for e in external_ids])]
    return conn.execute(update(table).where(*where).values(quarantine_id=entry, synced_at=now)).rowcount or 0
