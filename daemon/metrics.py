"""What the daemon exposes at ``/metrics`` (Prometheus text format, prometheus-client).

Two kinds of numbers. Counters and histograms of what this process did (rows synced, job
runs, sync and rule durations) live in the process: they reset on restart, as Prometheus
expects of counters. Facts about the warehouse (last successful sync per stream,
quarantine size, alerts by state, the outbox) are read from the database at scrape time,
so a standby daemon reports the same truth as the leader and nothing is double-counted.
A scrape reads a handful of small aggregates; their answer is cached for a few seconds.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector, disable_created_metrics
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import Engine, func, select
from sqlalchemy.exc import SQLAlchemyError

from models.inventory import last_successful_syncs
from models.tables import alerts, notifications, quarantine

log = logging.getLogger("salespulse.daemon")

SYNC_BUCKETS = (0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
RULE_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class Metrics:
    """The daemon's registry (its own, not the global one: tests run several daemons in one process)."""

    def __init__(self, engine: Engine, cache_s: float = 5.0) -> None:
        disable_created_metrics()  # '_created' series double the output and no dashboard reads them
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        ProcessCollector(registry=r)  # process_resident_memory_bytes and friends: memory over months
        self.leader = Gauge(
            "salespulse_leader", "1 while this daemon holds the leader lease and runs the jobs", registry=r
        )
        self.rows = Counter(
            "salespulse_sync_rows",
            "Rows written to the warehouse by this daemon's syncs",
            ["source", "stream"],
            registry=r,
        )
        self.quarantined = Counter(
            "salespulse_sync_quarantined",
            "Records quarantined by this daemon's syncs",
            ["source", "stream"],
            registry=r,
        )
        self.sync_seconds = Histogram(
            "salespulse_sync_duration_seconds",
            "Duration of a sync of one source",
            ["source"],
            buckets=SYNC_BUCKETS,
            registry=r,
        )
        self.rule_seconds = Histogram(
            "salespulse_rule_duration_seconds", "Duration of one rule check", ["rule"], buckets=RULE_BUCKETS, registry=r
        )
        self.job_runs = Counter(
            "salespulse_job_runs", "Job runs by job kind and outcome", ["job", "status"], registry=r
        )
        self.refused = Gauge(
            "salespulse_config_refused",
            "1 while the newest edit of these files is refused and the last good version runs",
            ["files"],
            registry=r,
        )
        r.register(WarehouseCollector(engine, cache_s))


class WarehouseCollector(Collector):
    """Warehouse facts, read at scrape time (cached ``cache_s``)."""

    def __init__(self, engine: Engine, cache_s: float) -> None:
        self.engine = engine
        self.cache_s = cache_s
        self._cached: tuple[float, list[Metric]] | None = None

    def describe(self) -> list[Metric]:
        return []  # read at scrape time; describing would query the database at registration

    def collect(self) -> Iterator[Metric]:
        if self._cached is None or time.monotonic() - self._cached[0] > self.cache_s:
            self._cached = (time.monotonic(), self._read())
        yield from self._cached[1]

    def _read(self) -> list[Metric]:
        up = GaugeMetricFamily("salespulse_warehouse_up", "1 when the warehouse answered this scrape's queries")
        try:
            with self.engine.connect() as conn:
                synced = last_successful_syncs(conn)
                quarantined = conn.execute(
                    select(quarantine.c.source, quarantine.c.stream, func.count()).group_by(
                        quarantine.c.source, quarantine.c.stream
                    )
                ).all()
                by_state = conn.execute(select(alerts.c.state, func.count()).group_by(alerts.c.state)).all()
                outbox = conn.execute(
                    select(notifications.c.status, func.count()).group_by(notifications.c.status)
                ).all()
        except SQLAlchemyError as exc:
            log.warning("metrics: the warehouse did not answer: %s", str(exc).splitlines()[0])
            up.add_metric([], 0)
            return [up]
        up.add_metric([], 1)
        last = GaugeMetricFamily(
            "salespulse_sync_last_success_timestamp_seconds",
            "When each stream last finished a sync without error (Unix time)",
            labels=["source", "stream"],
        )
        for (source, stream), finished in sorted(synced.items()):
            last.add_metric([source, stream], finished.timestamp())
        held = GaugeMetricFamily(
            "salespulse_quarantine_records", "Records waiting in quarantine", labels=["source", "stream"]
        )
        for source, stream, n in quarantined:
            held.add_metric([source, stream], n)
        states = GaugeMetricFamily("salespulse_alerts", "Alerts by state", labels=["state"])
        counts = dict(by_state)
        for state in sorted({"firing", "resolved", *counts}):
            states.add_metric([state], counts.get(state, 0))
        box = GaugeMetricFamily("salespulse_outbox_notifications", "Slack notifications by status", labels=["status"])
        counts = dict(outbox)
        for status in sorted({"pending", "sent", "dead", *counts}):
            box.add_metric([status], counts.get(status, 0))
        return [up, last, held, states, box]
