"""What is in the warehouse: the read-only facts ``status`` shows."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import Connection, Engine, func, select

from models.database import head_revision, schema_version
from models.tables import (
    DERIVED_SINCE,
    RATES_APPLIED,
    activities,
    daemon_instances,
    daemon_leases,
    exchange_rates,
    leads,
    metadata,
    notifications,
    opportunities,
    quarantine,
    quotas,
    sync_runs,
    sync_state,
)


@dataclass
class StreamStatus:
    source: str
    stream: str
    cursor: str | None = None
    last_status: str | None = None
    last_started_at: datetime | None = None
    last_error: str | None = None
    records_written: int | None = None
    quarantined: int = 0


@dataclass
class RateStatus:
    """One exchange rate in force and where it came from (``settings`` wins over a CRM's)."""

    currency: str
    rate: Decimal | None  # units of the reporting currency per unit; None: not convertible yet
    origin: str  # 'settings' or the CRM ('salesforce', 'hubspot')
    valid_from: date | None = None
    valid_to: date | None = None
    dated: bool = False
    overridden_by_settings: bool = False


@dataclass
class DaemonStatus:
    holder: str
    role: str
    started_at: datetime
    seen_at: datetime
    state: dict


@dataclass
class WarehouseStatus:
    schema_version: str | None
    head_version: str
    row_counts: dict[str, int]
    streams: list[StreamStatus] = field(default_factory=list)
    outbox: dict[str, int] = field(default_factory=dict)
    rates: list[RateStatus] = field(default_factory=list)
    stale_rows: dict[str, int] = field(default_factory=dict)  # rows whose newer CRM version is quarantined
    daemons: list[DaemonStatus] = field(default_factory=list)
    leader: tuple[str, datetime] | None = None  # holder of the scheduler lease and its expiry


def warehouse_status(engine: Engine, fx_rates: Mapping[str, Decimal] | None = None) -> WarehouseStatus:
    """``fx_rates``: the settings' overrides, shown first and marked on the CRM rates they replace."""
    with engine.connect() as conn:
        counts = {
            name: conn.execute(select(func.count()).select_from(table)).scalar_one()
            for name, table in sorted(metadata.tables.items())
        }
        streams: dict[tuple[str, str], StreamStatus] = {}
        for source, stream, cursor in conn.execute(
            select(sync_state.c.source, sync_state.c.stream, sync_state.c.cursor).where(
                sync_state.c.stream.not_in((RATES_APPLIED, DERIVED_SINCE))
            )
        ):
            streams[(source, stream)] = StreamStatus(source, stream, cursor=cursor)
        latest = (
            select(sync_runs.c.source, sync_runs.c.stream, func.max(sync_runs.c.id).label("id"))
            .group_by(sync_runs.c.source, sync_runs.c.stream)
            .subquery()
        )
        for run in conn.execute(select(sync_runs).join(latest, sync_runs.c.id == latest.c.id)).mappings():
            st = streams.setdefault((run["source"], run["stream"]), StreamStatus(run["source"], run["stream"]))
            st.last_status = run["status"]
            st.last_started_at = run["started_at"]
            st.last_error = run["error"]
            st.records_written = run["records_written"]
        for source, stream, n in conn.execute(
            select(quarantine.c.source, quarantine.c.stream, func.count()).group_by(
                quarantine.c.source, quarantine.c.stream
            )
        ):
            streams.setdefault((source, stream), StreamStatus(source, stream)).quarantined = n
        outbox = dict(conn.execute(select(notifications.c.status, func.count()).group_by(notifications.c.status)).all())
        overrides = dict(fx_rates or {})
        rates = [RateStatus(code, value, "settings") for code, value in sorted(overrides.items())]
        e = exchange_rates
        for source, currency, rate, valid_from, valid_to, dated in conn.execute(
            select(e.c.source, e.c.currency, e.c.rate, e.c.valid_from, e.c.valid_to, e.c.is_dated)
            .where(e.c.deleted_at.is_(None))
            .order_by(e.c.currency, e.c.source, e.c.valid_from)
        ):
            rates.append(RateStatus(currency, rate, source, valid_from, valid_to, dated, currency in overrides))
        stale = {
            table.name: conn.execute(
                select(func.count()).select_from(table).where(table.c.quarantine_id.is_not(None))
            ).scalar_one()
            for table in (opportunities, leads, activities, quotas)
        }
        daemons = [
            DaemonStatus(row.holder, row.role, row.started_at, row.seen_at, json.loads(row.state))
            for row in conn.execute(select(daemon_instances).order_by(daemon_instances.c.seen_at.desc()))
        ]
        lease = conn.execute(select(daemon_leases.c.holder, daemon_leases.c.expires_at)).first()
    return WarehouseStatus(
        schema_version=schema_version(engine),
        head_version=head_revision(),
        row_counts=counts,
        streams=[streams[k] for k in sorted(streams)],
        outbox=outbox,
        rates=rates,
        stale_rows={name: n for name, n in stale.items() if n},
        daemons=daemons,
        leader=(lease[0], lease[1]) if lease else None,
    )


def last_successful_syncs(conn: Connection) -> dict[tuple[str, str], datetime]:
    """When each (source, stream) last finished a sync run without error."""
    rows = conn.execute(
        select(sync_runs.c.source, sync_runs.c.stream, func.max(sync_runs.c.finished_at))
        .where(sync_runs.c.status == "ok")
        .group_by(sync_runs.c.source, sync_runs.c.stream)
    )
    return {(source, stream): finished for source, stream, finished in rows if finished is not None}


def source_synced_at(conn: Connection) -> dict[str, datetime]:
    """How fresh each source's data is: the oldest of its streams' last successful runs."""
    fresh: dict[str, datetime] = {}
    for (source, _stream), finished in last_successful_syncs(conn).items():
        fresh[source] = min(finished, fresh.get(source, finished))
    return fresh
