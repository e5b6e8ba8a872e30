"""Schema changes one process at a time: migrations on start and the bulk-load index DDL.

Two commands started together on a fresh warehouse (``sync --source salesforce`` and
``sync --source hubspot`` by hand, or a daemon and a ``check``) both migrate the empty
database, and both bulk-load the shared tables, dropping and re-creating their secondary
indexes. Without a lock the second one fails ("table activities already exists", "index ...
already exists"). The lock:

- PostgreSQL: an advisory lock keyed on the schema in use (``current_schema()``), so two
  warehouses in one database do not wait for each other. :func:`schema_lock` holds the
  session-level form for a whole migration run (released when the process dies, with its
  connection); :func:`lock_schema_changes` the transaction-level form for a few statements.
- SQLite: ``flock`` on ``<database>.schema-lock`` next to the database file for migrations
  (the kernel releases it with the process); index DDL needs no lock there, since SQLite
  runs one writer at a time and the statements say ``IF [NOT] EXISTS``.
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Connection, Engine, text

# The first key of PostgreSQL's two-key advisory locks: salespulse's schema lock ("SP" + 1).
LOCK_CLASS = 0x5350_0001
_KEY = "(:cls, hashtext(current_schema()))"


@contextmanager
def schema_lock(engine: Engine) -> Iterator[None]:
    """Hold the warehouse's schema lock (waiting for it) while the block runs."""
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            conn.execute(text(f"SELECT pg_advisory_lock{_KEY}"), {"cls": LOCK_CLASS})
            conn.commit()
            try:
                yield
            finally:
                conn.execute(text(f"SELECT pg_advisory_unlock{_KEY}"), {"cls": LOCK_CLASS})
                conn.commit()
        return
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:":
        yield  # an in-memory database has one user
        return
    with Path(f"{database}.schema-lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def lock_schema_changes(conn: Connection) -> None:
    """Within the connection's transaction, wait for other processes' schema changes.

    PostgreSQL: an advisory lock to the end of the transaction. SQLite: its write lock, taken by a
    write that changes nothing (the driver begins a transaction before a write, not before a read):
    until then each read of the schema is its own transaction, and another connection's DROP INDEX
    can land between two of them.
    """
    if conn.dialect.name == "postgresql":
        conn.execute(text(f"SELECT pg_advisory_xact_lock{_KEY}"), {"cls": LOCK_CLASS})
    elif conn.dialect.name == "sqlite":
        conn.execute(text("UPDATE sync_locks SET source = source WHERE 0"))
