"""At most one sync per source: a row in ``sync_locks``, on SQLite and PostgreSQL alike.

The primary key makes taking the lock atomic. A lock whose holder is a dead process on
this host, or whose heartbeat is older than ``lock_timeout_s``, is taken over, so a
SIGKILLed sync never blocks the next one for long.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

from sqlalchemy import Connection, Engine, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from models.clock import Clock
from models.errors import FatalError
from models.tables import sync_locks, sync_runs


class SyncLocked(FatalError):
    """Another sync of this source is running."""


def holder_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _holder_alive(holder: str) -> bool:
    host, _, pid = holder.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return True  # another machine: only the heartbeat timeout can tell
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextmanager
def source_lock(engine: Engine, source: str, clock: Clock, timeout_s: int) -> Iterator[str]:
    me = holder_name()
    now = clock()
    with engine.begin() as conn:
        current = conn.execute(select(sync_locks).where(sync_locks.c.source == source)).mappings().first()
        if current is not None:
            stale = now - current["heartbeat_at"] > timedelta(seconds=timeout_s) or not _holder_alive(current["holder"])
            if not stale:
                raise SyncLocked(
                    f"another sync of {source} is running ({current['holder']}, since "
                    f"{current['acquired_at']:%Y-%m-%d %H:%M:%S}Z); try again when it ends",
                    source=source,
                )
            conn.execute(
                delete(sync_locks).where(sync_locks.c.source == source, sync_locks.c.holder == current["holder"])
            )
            _close_interrupted_runs(conn, source, now)
    try:
        with engine.begin() as conn:
            conn.execute(insert(sync_locks).values(source=source, holder=me, acquired_at=now, heartbeat_at=now))
    except IntegrityError:
        raise SyncLocked(f"another sync of {source} started just now; try again when it ends", source=source) from None
    try:
        yield me
    finally:
        with engine.begin() as conn:
            conn.execute(delete(sync_locks).where(sync_locks.c.source == source, sync_locks.c.holder == me))


def heartbeat(conn: Connection, source: str, holder: str, clock: Clock) -> None:
    conn.execute(
        update(sync_locks)
        .where(sync_locks.c.source == source, sync_locks.c.holder == holder)
        .values(heartbeat_at=clock())
    )


def _close_interrupted_runs(conn: Connection, source: str, now) -> None:
    conn.execute(
        update(sync_runs)
        .where(sync_runs.c.source == source, sync_runs.c.status == "running")
        .values(status="failed", finished_at=now, error="interrupted (the process died); resumed by the next run")
    )
