"""At most one sync per source: a row in ``sync_locks``, on SQLite and PostgreSQL alike.

The primary key makes taking the lock atomic. Who may take a lock over:
- held on this host: only when its process is gone (or the pid now belongs to a process
  that started after the lock was taken: a reused pid after a restart); a live holder
  keeps it however long it waits, since a Bulk API job may be polled for an hour;
- held on another host, which we cannot ask: when its heartbeat is older than
  ``lock_timeout_s``. The holder beats per committed batch and during every wait
  (:data:`connectors.retry.keepalive`), so only a dead or hung sync goes quiet that long.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from models.clock import Clock
from models.errors import FatalError
from models.tables import sync_locks, sync_runs

# /proc gives a start time to the clock tick and the boot time to the second.
PID_START_SLACK = timedelta(seconds=2)


class SyncLocked(FatalError):
    """Another sync of this source is running."""


def holder_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _abandoned(lock: Mapping[str, Any], now: datetime, timeout_s: int) -> bool:
    host, _, pid = lock["holder"].rpartition(":")
    if host == socket.gethostname() and pid.isdigit():
        return not _running_since(int(pid), lock["acquired_at"])
    return now - lock["heartbeat_at"] > timedelta(seconds=timeout_s)


def _running_since(pid: int, acquired_at: datetime) -> bool:
    """Whether process ``pid`` runs (not a zombie) and was already running when the lock was taken."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    seen = _proc_stat(pid)
    if seen is None:  # not Linux, or /proc unreadable: the pid's existence is all we know
        return True
    state, started = seen
    return state != "Z" and started <= acquired_at + PID_START_SLACK


def _proc_stat(pid: int) -> tuple[str, datetime] | None:
    """A process's state letter and start time, from Linux's /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        boot = next(line for line in Path("/proc/stat").read_text().splitlines() if line.startswith("btime "))
        ticks = int(fields[19])
    except (OSError, IndexError, ValueError, StopIteration):
        return None
    booted = datetime.fromtimestamp(int(boot.split()[1]), UTC)
    return fields[0], booted + timedelta(seconds=ticks / os.sysconf("SC_CLK_TCK"))


@contextmanager
def source_lock(engine: Engine, source: str, clock: Clock, timeout_s: int) -> Iterator[str]:
    me = holder_name()
    now = clock()
    with engine.begin() as conn:
        current = conn.execute(select(sync_locks).where(sync_locks.c.source == source)).mappings().first()
        if current is not None:
            if not _abandoned(current, now, timeout_s):
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
