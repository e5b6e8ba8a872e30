"""The sandbox company's own database: one SQLite file holding what the fake CRMs serve.

Why a database and not Python lists: the large scale (1M deals, 5M activities) must be
generated and served without holding the company in memory, and the fake servers must
filter, sort and page the way the real APIs do. Each fake translates its wire query
(SOQL, HubSpot search filters) into SQL over these tables.

The tables are CRM-neutral: every row has ``crm`` ('salesforce' or 'hubspot') and the
id that CRM would show (Salesforce 18-character ids, HubSpot numeric ids as text).
``seq`` is a per-table integer that orders ids numerically (HubSpot) or matches the
zero-padded text order (Salesforce). Values that may be dirty on purpose (amounts,
dates of the business, names) are stored as TEXT exactly as the CRM would serve them;
the bookkeeping timestamps the servers filter on (``modified_at``) are always valid
ISO-8601 UTC strings ``YYYY-MM-DDTHH:MM:SS.fffZ`` so text order is time order.

Deletion follows each vendor: Salesforce moves ``SystemModstamp`` on delete (so
``modified_at`` changes) and deletes a deal's tasks and events with it (its field history
counts as deleted through the deal); HubSpot archiving does not touch
``hs_lastmodifieddate`` (``modified_at`` stays, ``deleted_at`` is set) and leaves the
deal's engagements alone.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS teams (
    crm TEXT NOT NULL, id TEXT NOT NULL, seq INTEGER NOT NULL, name TEXT NOT NULL,
    parent_id TEXT, created_at TEXT NOT NULL, modified_at TEXT NOT NULL,
    PRIMARY KEY (crm, id));
CREATE TABLE IF NOT EXISTS users (
    crm TEXT NOT NULL, id TEXT NOT NULL, seq INTEGER NOT NULL,
    email TEXT, first_name TEXT, last_name TEXT, title TEXT,
    team_id TEXT, manager_id TEXT, is_active INTEGER NOT NULL DEFAULT 1,
    hired_on TEXT, created_at TEXT NOT NULL, modified_at TEXT NOT NULL,
    deleted_at TEXT,
    PRIMARY KEY (crm, id));
CREATE TABLE IF NOT EXISTS pipelines (
    crm TEXT NOT NULL, id TEXT NOT NULL, label TEXT NOT NULL, display_order INTEGER NOT NULL,
    created_at TEXT NOT NULL, modified_at TEXT NOT NULL,
    PRIMARY KEY (crm, id));
CREATE TABLE IF NOT EXISTS stages (
    crm TEXT NOT NULL, id TEXT NOT NULL, seq INTEGER NOT NULL, pipeline_id TEXT NOT NULL,
    label TEXT NOT NULL, api_name TEXT NOT NULL, display_order INTEGER NOT NULL,
    probability REAL NOT NULL, is_closed INTEGER NOT NULL, is_won INTEGER NOT NULL,
    is_active INTEGER NOT NULL DEFAULT 1, created_at TEXT NOT NULL, modified_at TEXT NOT NULL,
    PRIMARY KEY (crm, id));
CREATE TABLE IF NOT EXISTS leads (
    crm TEXT NOT NULL, id TEXT NOT NULL, seq INTEGER NOT NULL,
    first_name TEXT, last_name TEXT, company TEXT, email TEXT,
    status TEXT, lifecycle_stage TEXT, is_qualified INTEGER NOT NULL DEFAULT 0,
    is_converted INTEGER NOT NULL DEFAULT 0, converted_at TEXT, converted_deal_id TEXT,
    owner_id TEXT, assigned_at TEXT, source TEXT,
    created_at TEXT NOT NULL, modified_at TEXT NOT NULL, deleted_at TEXT,
    PRIMARY KEY (crm, id));
CREATE TABLE IF NOT EXISTS deals (
    crm TEXT NOT NULL, id TEXT NOT NULL, seq INTEGER NOT NULL,
    name TEXT, owner_id TEXT, amount TEXT, currency TEXT,
    pipeline_id TEXT, stage_id TEXT, close_date TEXT,
    is_closed INTEGER NOT NULL DEFAULT 0, is_won INTEGER NOT NULL DEFAULT 0, closed_at TEXT,
    stage_entered_at TEXT, last_activity_at TEXT, lead_id TEXT,
    created_at TEXT NOT NULL, modified_at TEXT NOT NULL, deleted_at TEXT,
    PRIMARY KEY (crm, id));
CREATE TABLE IF NOT EXISTS deal_history (
    crm TEXT NOT NULL, id TEXT NOT NULL, seq INTEGER NOT NULL, deal_id TEXT NOT NULL,
    field TEXT NOT NULL, old_value TEXT, new_value TEXT, changed_at TEXT NOT NULL,
    PRIMARY KEY (crm, id));
CREATE TABLE IF NOT EXISTS activities (
    crm TEXT NOT NULL, id TEXT NOT NULL, seq INTEGER NOT NULL,
    type TEXT NOT NULL, subject TEXT, owner_id TEXT, deal_id TEXT, lead_id TEXT,
    occurred_at TEXT, created_at TEXT NOT NULL, modified_at TEXT NOT NULL, deleted_at TEXT,
    PRIMARY KEY (crm, id));
CREATE TABLE IF NOT EXISTS currencies (
    crm TEXT NOT NULL, id TEXT NOT NULL, seq INTEGER NOT NULL, iso_code TEXT NOT NULL,
    conversion_rate TEXT NOT NULL, is_corporate INTEGER NOT NULL DEFAULT 0, is_active INTEGER NOT NULL DEFAULT 1,
    start_date TEXT, next_start_date TEXT,
    created_at TEXT NOT NULL, modified_at TEXT NOT NULL,
    PRIMARY KEY (crm, id));
CREATE TABLE IF NOT EXISTS quotas (
    crm TEXT NOT NULL, id TEXT NOT NULL, seq INTEGER NOT NULL, owner_id TEXT NOT NULL,
    period_start TEXT NOT NULL, period_end TEXT NOT NULL, amount TEXT NOT NULL,
    currency TEXT NOT NULL, created_at TEXT NOT NULL, modified_at TEXT NOT NULL,
    PRIMARY KEY (crm, id));
"""

# Indexes are created after bulk generation (faster load); the fakes rely on them.
INDEXES = """
CREATE INDEX IF NOT EXISTS ix_users_mod ON users (crm, modified_at, id);
CREATE INDEX IF NOT EXISTS ix_leads_mod ON leads (crm, modified_at, id);
CREATE INDEX IF NOT EXISTS ix_leads_seq ON leads (crm, seq);
CREATE INDEX IF NOT EXISTS ix_deals_mod ON deals (crm, modified_at, id);
CREATE INDEX IF NOT EXISTS ix_deals_seq ON deals (crm, seq);
CREATE INDEX IF NOT EXISTS ix_hist_changed ON deal_history (crm, changed_at, id);
CREATE INDEX IF NOT EXISTS ix_hist_deal ON deal_history (crm, deal_id);
CREATE INDEX IF NOT EXISTS ix_act_mod ON activities (crm, type, modified_at, id);
CREATE INDEX IF NOT EXISTS ix_act_seq ON activities (crm, type, seq);
CREATE INDEX IF NOT EXISTS ix_act_deal ON activities (crm, deal_id);
CREATE INDEX IF NOT EXISTS ix_quotas_mod ON quotas (crm, modified_at, id);
"""

TABLES = (
    "teams",
    "users",
    "pipelines",
    "stages",
    "leads",
    "deals",
    "deal_history",
    "activities",
    "quotas",
    "currencies",
)

# Tables whose rows can be soft-deleted (Salesforce IsDeleted / HubSpot archived).
DELETABLE = ("users", "leads", "deals", "activities")


def iso_utc(moment: datetime) -> str:
    """The one text form of a bookkeeping timestamp: millisecond precision, 'Z'."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _system_clock() -> datetime:
    return datetime.now(UTC)


class Store:
    """A handle on the sandbox database, safe to share between server threads.

    Each thread gets its own SQLite connection (WAL mode, so readers never block the
    writer). ``clock`` gives the 'now' stamped on mutations; tests inject one.
    """

    def __init__(self, path: Path | str, clock: Callable[[], datetime] = _system_clock) -> None:
        self.path = Path(path)
        self.clock = clock
        self._local = threading.local()
        self._write_lock = threading.Lock()
        with self.connect() as conn:
            conn.executescript(SCHEMA)

    # -- connections -------------------------------------------------------------
    def connect(self) -> sqlite3.Connection:
        """This thread's connection (created on first use)."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=OFF")
            conn.execute("PRAGMA busy_timeout=30000")
            self._local.conn = conn
        return conn

    def new_connection(self) -> sqlite3.Connection:
        """A private connection, for a server-side cursor that outlives one request."""
        conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA busy_timeout=30000")
        return conn

    def create_indexes(self) -> None:
        self.connect().executescript(INDEXES)

    # -- metadata ----------------------------------------------------------------
    def set_meta(self, key: str, value: str) -> None:
        self.connect().execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    def meta(self, key: str, default: str | None = None) -> str | None:
        row = self.connect().execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else default

    # -- bulk load (generator) -----------------------------------------------------
    def insert_many(self, table: str, rows: Sequence[dict[str, Any]]) -> None:
        """Insert a batch of rows (all with the same keys) in one transaction."""
        if not rows:
            return
        if table not in TABLES:
            raise ValueError(f"unknown sandbox table {table!r}")
        cols = list(rows[0])
        sql = f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' for _ in cols)})"
        conn = self.connect()
        with self._write_lock:
            conn.execute("BEGIN")
            conn.executemany(sql, [tuple(r[c] for c in cols) for r in rows])
            conn.execute("COMMIT")

    def count(self, table: str, crm: str, where: str = "1=1", params: Iterable[Any] = ()) -> int:
        sql = f"SELECT COUNT(*) FROM {table} WHERE crm = ? AND ({where})"
        return self.connect().execute(sql, (crm, *params)).fetchone()[0]

    def next_seq(self, table: str, crm: str) -> int:
        row = self.connect().execute(f"SELECT COALESCE(MAX(seq), 0) FROM {table} WHERE crm = ?", (crm,)).fetchone()
        return row[0] + 1

    # -- mutations between syncs (tests, demo) -----------------------------------
    def update(self, table: str, crm: str, ids: Sequence[str], **changes: Any) -> int:
        """Change fields on some rows and move their modification stamp to now."""
        if table not in TABLES:
            raise ValueError(f"unknown sandbox table {table!r}")
        now = iso_utc(self.clock())
        sets = ", ".join(f"{k} = ?" for k in changes)
        sets = f"{sets}, modified_at = ?" if sets else "modified_at = ?"
        sql = f"UPDATE {table} SET {sets} WHERE crm = ? AND id = ?"
        conn = self.connect()
        with self._write_lock:
            conn.execute("BEGIN")
            n = 0
            for rid in ids:
                n += conn.execute(sql, (*changes.values(), now, crm, rid)).rowcount
            conn.execute("COMMIT")
        return n

    def delete(self, table: str, crm: str, ids: Sequence[str]) -> int:
        """Soft-delete rows the way the CRM does (see the module docstring)."""
        if table not in DELETABLE:
            raise ValueError(f"sandbox table {table!r} has no deletes")
        now = iso_utc(self.clock())
        if crm == "salesforce":
            sql = f"UPDATE {table} SET deleted_at = ?, modified_at = ? WHERE crm = ? AND id = ?"
            args = [(now, now, crm, rid) for rid in ids]
        else:
            sql = f"UPDATE {table} SET deleted_at = ? WHERE crm = ? AND id = ?"
            args = [(now, crm, rid) for rid in ids]
        conn = self.connect()
        with self._write_lock:
            conn.execute("BEGIN")
            n = sum(conn.execute(sql, a).rowcount for a in args)
            if crm == "salesforce" and table == "deals":
                conn.executemany(
                    "UPDATE activities SET deleted_at = ?, modified_at = ? "
                    "WHERE crm = ? AND deal_id = ? AND deleted_at IS NULL",
                    args,
                )
            conn.execute("COMMIT")
        return n

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
