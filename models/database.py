"""Opening the warehouse and bringing its schema to the newest migration.

Every command that touches the database calls :func:`open_warehouse`, which runs Alembic
``upgrade head`` when the database is behind: an upgraded checkout migrates its database
on first start (under :func:`models.schema_lock.schema_lock`: two processes started together
on a fresh warehouse migrate it once). Alembic is imported only then: importing it is a fifth of the start-up of
a short incremental sync, which the daemon runs every few minutes.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from models.errors import FatalError
from models.schema_lock import schema_lock
from models.tables import CRM_TABLES, STAGE_ROLLUPS

if TYPE_CHECKING:
    from alembic.config import Config

SQLITE_BUSY_TIMEOUT_MS = 30_000  # how long a SQLite connection waits for another's write lock
MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


def make_engine(url: str) -> Engine:
    """An engine with the per-dialect settings salespulse relies on."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record) -> None:
            cur = dbapi_conn.cursor()
            # WAL: readers (status, rule checks) never block the sync's writer.
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            # Bigger page cache (32 MB; each stream worker has its own) and rarer checkpoints:
            # bulk syncs rewrite index pages a lot (16 MB made a 1M-deal full sync 25 % slower).
            cur.execute("PRAGMA cache_size=-32768")
            cur.execute("PRAGMA wal_autocheckpoint=20000")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True)


def alembic_config(engine: Engine | None = None) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    if engine is not None:
        cfg.attributes["engine"] = engine
    return cfg


def upgrade_head(engine: Engine) -> None:
    from alembic import command

    command.upgrade(alembic_config(engine), "head")


def schema_version(engine: Engine) -> str | None:
    """The revision the database is at (None: never migrated)."""
    with engine.connect() as conn:
        if not inspect(conn).has_table("alembic_version"):
            return None
        return conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one_or_none()


def head_revision() -> str:
    """The newest migration's revision: migrations are numbered files (``0002_add_x.py`` is revision 0002).

    A test holds this to Alembic's own answer, so a migration named otherwise fails CI.
    """
    return max(path.name.split("_", 1)[0] for path in (MIGRATIONS / "versions").glob("[0-9]*_*.py"))


def open_warehouse(url: str) -> Engine:
    """A migrated engine, or a FatalError that says which database and why (password masked)."""
    engine = make_engine(url)
    try:
        if schema_version(engine) != head_revision():
            with schema_lock(engine):  # another process may be migrating it right now
                if schema_version(engine) != head_revision():
                    upgrade_head(engine)
    except OperationalError as exc:
        where = make_url(url).render_as_string(hide_password=True)
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        raise FatalError(f"cannot open the warehouse {where}: {reason}") from None
    return engine


def gather_statistics(conn: Connection) -> None:
    """Refresh the planner's statistics of the warehouse's data tables after a bulk load.

    SQLite has none until ``ANALYZE`` runs, and without them (or with sampled ones, which take a
    column that is null on every sampled row for a selective one) it planned the rollup rebuild of a
    fresh million-deal warehouse from the deals' ``deleted_at`` index and ran for many minutes. A
    full ``ANALYZE`` of a million deals and their history takes 20-40 s, next to a first sync of
    15 minutes. PostgreSQL's autovacuum would get there, but only after the sync's own queries.
    """
    # This schema's tables by name: a bare ANALYZE on PostgreSQL would visit every schema of the database.
    names = [table.name for table in (*CRM_TABLES, *STAGE_ROLLUPS)]
    if conn.dialect.name == "sqlite":
        for name in names:
            conn.exec_driver_sql(f"ANALYZE {name}")
    else:
        conn.exec_driver_sql(f"ANALYZE {', '.join(names)}")
