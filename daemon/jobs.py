"""The work the daemon schedules, one method per job kind, each returning an outcome.

Jobs raise nothing the daemon must handle specially: a failure is an outcome with its
reason (logged on one line and counted), and the job simply runs again at its next time.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Any

from sqlalchemy import Engine, func, select

from alerts.digest import plan_digests, queue_digests
from alerts.outbox import FlushResult, flush, pacing_for
from alerts.pipeline import process
from alerts.report import open_alerts
from alerts.slack import SlackTransport
from connectors.registry import build_connector
from daemon.metrics import Metrics
from models.clock import Clock
from models.errors import ConfigError
from models.inventory import source_synced_at
from models.settings import Settings
from models.tables import reps
from rules.check import evaluate_rules
from rules.model import Rule, Warehouse
from rules.standing import standing
from sync.engine import SyncEngine
from sync.progress import StreamProgress
from sync.quota_file import load_quota_file


@dataclass
class Outcome:
    status: str  # ok | failed | skipped (not run, with the reason) | stopped (at a checkpoint, by shutdown)
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
    sources: list[str] = field(default_factory=list)
    after_sync: Callable[[str], None] = lambda source: None
    rules: Mapping[str, Rule] = field(default_factory=dict)  # the rules in use (replaced whole on reload)
    # One sync at a time: the sources load the same tables, and a first sync drops and rebuilds
    # their indexes (two at once raced: "index ... already exists"); one writer is what SQLite
    # allows anyway.
    _syncing: threading.Lock = field(default_factory=threading.Lock)
    # One flush at a time in this process: a check's own flush and the outbox job.
    _flushing: threading.Lock = field(default_factory=threading.Lock)

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

    def check(self, rule_id: str) -> Outcome:
        """One rule on fresh data: evaluate, update alert state, queue and deliver its notifications."""
        rule = self.rules.get(rule_id)
        if rule is None:
            return Outcome("skipped", {"rule": rule_id}, "the rule is no longer in the rule files")
        counts: dict[str, Any] = {"rule": rule_id}
        not_fresh = self._freshen([s for s in (rule.scope.sources or self.sources) if s in self.sources])
        if not_fresh:
            return Outcome("skipped", counts, not_fresh)
        now = self.clock()
        started = time.monotonic()
        evaluations = evaluate_rules([rule], self.engine, self.settings.company, now)
        self.metrics.rule_seconds.labels(rule_id).observe(time.monotonic() - started)
        failed = [e.error for e in evaluations if e.error]
        if failed:
            return Outcome("failed", counts, failed[0])
        counts["findings"] = sum(len(e.findings) for e in evaluations)
        counts["notes"] = sum(len(e.notes) for e in evaluations)
        result = process(evaluations, {rule.id: rule}, self.engine, self.settings, now)
        counts["firing"] = result.firing
        counts["queued"] = len(result.messages)
        delivered = self.flush()
        counts |= {key: n for key, n in delivered.counts.items() if n}
        if delivered.status != "ok":
            return Outcome("failed", counts, f"alerts stored, delivery deferred: {delivered.error}")
        return Outcome("ok", counts)

    def flush(self) -> Outcome:
        """Deliver what the outbox holds (whoever queued it); an outage leaves it for the next run."""
        with self._flushing:
            result: FlushResult = flush(self.engine, self.slack, self.clock(), pacing_for(self.settings.slack))
        counts = {"sent": result.sent, "found_posted": result.found_posted, "updated": result.updated}
        counts |= {"failed": result.failed, "retrying": result.retrying, "deferred": result.deferred}
        if result.stopped:
            return Outcome("failed", counts, result.stopped)
        return Outcome("ok", counts)

    @cached_property
    def slack(self) -> SlackTransport:
        return SlackTransport.from_settings(self.settings.slack)

    def digest(self, period: datetime | None = None) -> Outcome:
        """The team digest (standing against quota, open alerts, chart) to each team's channel, through
        the outbox. ``period``: the scheduled time this run is for; a channel already given the digest
        of that time (by an earlier run or another leader) is not given it again."""
        not_fresh = self._freshen(self.sources)
        if not_fresh:
            return Outcome("skipped", {}, not_fresh)
        now = self.clock()
        with self.engine.connect() as conn:
            where = standing(Warehouse(conn, self.settings.company), now)
        slack = self.settings.slack
        digests = plan_digests(where, open_alerts(self.engine), slack, team_weight=slack.digest_team_weight)
        key = (period or now).astimezone(UTC).isoformat(timespec="seconds")
        queued = queue_digests(self.engine, digests, now, period=key, secrets=self.settings.secret_values())
        counts: dict[str, Any] = {"channels": len(digests), "queued": len(queued), "reps": len(where.reps)}
        delivered = self.flush()
        counts |= {k: n for k, n in delivered.counts.items() if n}
        if delivered.status != "ok":
            return Outcome("failed", counts, f"digest stored, delivery deferred to the outbox: {delivered.error}")
        return Outcome("ok", counts)

    def _freshen(self, sources: list[str]) -> str | None:
        """Sync the sources whose data is older than ``rules.max_data_age``; the reason if still stale."""
        for source in self._stale(sources):
            if self.stop.is_set():
                return "the daemon is stopping"
            self.sync(source)
        stale = self._stale(sources)
        return self._stale_reason(stale) if stale else None

    def _stale(self, wanted: list[str]) -> dict[str, datetime | None]:
        """The sources whose last complete sync is older than ``rules.max_data_age``."""
        with self.engine.connect() as conn:
            synced = source_synced_at(conn)
        oldest = self.clock() - timedelta(minutes=self.settings.rules.max_data_age)
        return {s: synced.get(s) for s in wanted if synced.get(s) is None or synced[s] < oldest}

    def _stale_reason(self, stale: dict[str, datetime | None]) -> str:
        parts = [
            f"{source} last synced {at:%Y-%m-%d %H:%M:%S}Z" if at else f"{source} never synced"
            for source, at in stale.items()
        ]
        return (
            f"data too old to judge ({', '.join(parts)}; rules.max_data_age = {self.settings.rules.max_data_age} min) "
            "and syncing it now did not succeed; the check runs again at its next time"
        )

    def load_quotas(self) -> str:
        """The admins' quota file into the warehouse (all lines or none); raises QuotaFileError to refuse."""
        path = self.settings.quotas.path
        if path is None:
            raise ConfigError("no quota file is set", source="settings", key="quotas.path")
        with self.engine.begin() as conn:
            if conn.execute(select(func.count()).select_from(reps)).scalar_one() == 0:
                # Every line would be 'unknown rep': one line saying why is enough.
                raise ConfigError("no reps synced yet; the file is loaded after the first sync", source=str(path))
            n = load_quota_file(conn, path, self.settings.company, self.clock())
        return f"{n} quota line(s) stored"
