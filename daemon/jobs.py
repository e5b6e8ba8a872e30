"""The work the daemon schedules, one method per job kind, each returning an outcome.

Jobs raise nothing the daemon must handle specially: a failure is an outcome with its
reason (logged on one line and counted), and the job simply runs again at its next time.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine

from connectors.registry import build_connector
from daemon.metrics import Metrics
from models.clock import Clock
from models.settings import Settings
from sync.engine import SyncEngine
from sync.progress import StreamProgress
from sync.quota_file import load_quota_file


@dataclass
class Outcome:
    status: str  # ok | failed | skipped
    counts: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


class _Quiet:
    """Per-stream progress is noise in a daemon's log; the job's own line carries the totals."""

    def stream(self, source: str, stream: str) -> StreamProgress:  # noqa: ARG002
        return self

    def advance(self, records: int) -> None:
        pass

    def finish(self, summary: str) -> None:
        pass


@dataclass
class Jobs:
    engine: Engine
    settings: Settings
    clock: Clock
    metrics: Metrics
    stop: threading.Event
    after_sync: Callable[[str], None] = lambda source: None
    # One sync at a time: the sources load the same tables, and a first sync drops and rebuilds
    # their indexes (two at once raced: "index ... already exists"); one writer is what SQLite
    # allows anyway.
    _syncing: threading.Lock = field(default_factory=threading.Lock)

    def sync(self, source: str) -> Outcome:
        """An incremental sync of one source; stops between batches when the daemon stops."""
        sync_engine = SyncEngine(self.engine, self.settings, self.clock, _Quiet(), should_stop=self.stop.is_set)
        with self._syncing:
            if self.stop.is_set():
                return Outcome("skipped", {"source": source}, "the daemon is stopping")
            connector = build_connector(source, self.settings)
            try:
                with self.metrics.sync_seconds.labels(source).time():
                    results = sync_engine.sync_source(connector)
            finally:
                connector.close()
        counts: dict[str, Any] = {"source": source, "streams": len(results)}
        for key in ("read", "written", "quarantined", "deleted"):
            counts[key] = sum(getattr(r, key) for r in results)
        for r in results:
            self.metrics.rows.labels(source, r.stream).inc(r.written)
            self.metrics.quarantined.labels(source, r.stream).inc(r.quarantined)
        unfinished = [r for r in results if r.status != "ok"]
        if not unfinished:
            self.after_sync(source)
            return Outcome("ok", counts)
        counts["streams_failed"] = len(unfinished)
        error = "; ".join(f"{r.stream}: {r.error}" for r in unfinished)
        return Outcome("stopped" if all(r.status == "stopped" for r in unfinished) else "failed", counts, error)

    def load_quotas(self) -> str:
        """The admins' quota file into the warehouse (all lines or none); raises QuotaFileError to refuse."""
        path = self.settings.quotas.path
        assert path is not None  # only watched when set
        with self.engine.begin() as conn:
            n = load_quota_file(conn, path, self.settings.company, self.clock())
        return f"{n} quota line(s) stored"
