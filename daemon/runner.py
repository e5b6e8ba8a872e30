"""The daemon's main loop: leadership, the schedule, hot reload, health, and a bounded stop.

Threads: APScheduler runs jobs on a small pool; the main thread owns everything else
(signals, the lease, polling files, writing this daemon's status row). Jobs run only while
this daemon holds the leader lease: the scheduler starts paused and is resumed on taking
the lease and paused on losing it, and a job checks the lease again before it starts.

Stopping (SIGTERM / SIGINT): no new job starts; running jobs are asked to stop at their
next checkpoint (a sync between two committed batches); the daemon waits for them up to
``service.stop_timeout_s``, hands back the lease, and exits 0. A job still running after
the bound is abandoned: its open transaction rolls back and the next run resumes from the
last committed cursor, so the bound is never bought with lost or doubled data.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import Engine, delete, insert, update
from sqlalchemy.exc import SQLAlchemyError

from daemon.health import Health, check_health
from daemon.http import Endpoint
from daemon.jobs import Jobs, Outcome
from daemon.lease import Lease
from daemon.memory import trim_malloc
from daemon.metrics import Metrics
from daemon.watch import Watched
from models.clock import Clock
from models.errors import ConfigError, SalespulseError
from models.settings import Settings, load_settings
from models.tables import daemon_instances
from rules.schedule import cron_trigger, scheduled_time

log = logging.getLogger("salespulse.daemon")

TICK_S = 0.5
STATUS_KEPT = timedelta(days=7)


class Daemon:
    def __init__(self, engine: Engine, settings: Settings, sources: list[str], clock: Clock) -> None:
        self.engine = engine
        self.settings = settings
        self.sources = sources
        self.clock = clock
        self.service = settings.service
        self.stop = threading.Event()
        self.metrics = Metrics(engine)
        self.lease = Lease(engine, clock, timedelta(seconds=self.service.lease_s))
        self.jobs = Jobs(engine, settings, clock, self.metrics, self.stop, sources, after_sync=self._after_sync)
        self.started_at = clock()
        self.loop_seen_at = self.started_at
        self.running: dict[str, float] = {}  # job id -> monotonic start
        self.job_state: dict[str, dict[str, Any]] = {}
        self.watched: list[Watched] = []
        self.scheduler = BackgroundScheduler(
            timezone=settings.company.timezone,
            executors={"default": ThreadPoolExecutor(max_workers=4)},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": self.service.misfire_grace_s},
        )
        self.endpoint: Endpoint | None = None
        self._lock = threading.Lock()
        self._quotas_dirty = False
        self._schedule_fixed_jobs()

    # -- set-up ------------------------------------------------------------------------
    def add_job(self, job_id: str, kind: str, trigger: Any, work: Callable[[], Outcome], **kw: Any) -> None:
        """Schedule (or replace) a job; it runs through :meth:`_run` (lease check, one log line, metrics)."""
        self.scheduler.add_job(
            self._run, trigger, args=(job_id, kind, work), id=job_id, name=job_id, replace_existing=True, **kw
        )

    def remove_job(self, job_id: str) -> None:
        if self.scheduler.get_job(job_id) is not None:
            self.scheduler.remove_job(job_id)
        self.job_state.pop(job_id, None)

    def watch(self, watched: Watched, *, required: bool) -> None:
        """Load a group of files now and watch it; ``required``: a refusal at start stops the daemon (exit 2)."""
        self.watched.append(watched)
        watched.poll(self.clock())
        if required and watched.refused:
            raise ConfigError(
                f"{watched.name} refused at start: " + " | ".join(watched.refused.problems),
                source=", ".join(str(p) for p in watched.files()),
            )

    def reload_channel_map(self, config: Path) -> str:
        """Re-read the settings file and put its ``[slack] team_channels`` in use (the channel map).

        Other settings are read at start only: a change to them is logged as waiting for a restart.
        """
        fresh = load_settings(config)
        running = self.settings.model_dump(exclude={"slack": {"team_channels"}})
        changed = [
            name
            for name, value in fresh.model_dump(exclude={"slack": {"team_channels"}}).items()
            if running[name] != value
        ]
        if changed:
            log.warning(
                "settings changed in [%s]: applied at the next restart (only [slack] team_channels is reloaded)",
                ", ".join(changed),
                extra={"fields": {"event": "restart_needed", "sections": ",".join(changed)}},
            )
        self.settings.slack.team_channels = fresh.slack.team_channels
        return f"{len(fresh.slack.team_channels)} team channel(s)"

    def _schedule_fixed_jobs(self) -> None:
        """A sync per source at its interval, the outbox and the digest (rule checks come from the rule files)."""
        every = timedelta(minutes=self.settings.sync.interval_minutes)
        for source in self.sources:
            trigger = IntervalTrigger(seconds=every.total_seconds())
            self.add_job(f"sync:{source}", "sync", trigger, partial(self.jobs.sync, source))
        self.add_job("outbox", "outbox", IntervalTrigger(seconds=self.service.outbox_interval_s), self.jobs.flush)
        try:
            digest = cron_trigger(self.service.digest_schedule, self.settings.company.timezone)
        except ValueError as exc:
            raise ConfigError(
                f"{exc}; expected a cron line such as '0 8 * * 1'", source="settings", key="service.digest_schedule"
            ) from None
        self.add_job("digest", "digest", digest, partial(self._digest, digest))

    def _digest(self, trigger: Any) -> Outcome:
        """The digest for the scheduled time this run is for (:func:`scheduled_time`). A digest Slack
        refused or could not take waits in the outbox, which retries it."""
        now = self.clock().astimezone(self.scheduler.timezone)
        return self.jobs.digest(scheduled_time(trigger, now, timedelta(seconds=self.service.misfire_grace_s)))

    # -- the loop ----------------------------------------------------------------------
    def run(self) -> int:
        self._install_signals()
        if self.service.http_port:
            self.endpoint = Endpoint(self.service.http_port, self.metrics.registry, self.health).start()
        self.scheduler.start(paused=True)
        log.info(
            "daemon started",
            extra={"fields": {"event": "started", "holder": self.lease.holder, "sources": ",".join(self.sources)}},
        )
        renew_every = self.service.lease_s / 3
        next_renew = next_poll = 0.0
        leader = False
        while not self.stop.wait(TICK_S):
            self.loop_seen_at = self.clock()
            now_m = time.monotonic()
            if now_m >= next_renew:
                next_renew = now_m + renew_every
                leader = self._lead(leader)
                self._write_state("leader" if leader else "standby")
            elif leader and not self.lease.held():
                leader = self._lead(leader)  # our lease lapsed between renewals (database down): step down
            if now_m >= next_poll:
                next_poll = now_m + self.service.reload_poll_s
                if self._poll_files(force_quotas=leader and self._quotas_dirty):
                    self._write_state("leader" if leader else "standby")
        return self._shutdown()

    def _lead(self, was_leader: bool) -> bool:
        leader = self.lease.renew()
        if leader and not was_leader:
            log.info(
                "became the leader: running the jobs",
                extra={"fields": {"event": "leader", "holder": self.lease.holder}},
            )
            now = self.clock().astimezone(self.scheduler.timezone)
            for source in self.sources:
                job = self.scheduler.get_job(f"sync:{source}")
                if job is not None:
                    job.modify(next_run_time=now)
            self.scheduler.resume()
        elif was_leader and not leader:
            log.warning(
                "lost the leader lease: pausing the jobs",
                extra={"fields": {"event": "standby", "holder": self.lease.holder}},
            )
            self.scheduler.pause()
        self.metrics.leader.set(1 if leader else 0)
        return leader

    def _poll_files(self, *, force_quotas: bool) -> bool:
        """Look at the watched files; True when what is in use or refused changed (``status`` should know)."""
        now = self.clock()
        changed = False
        for watched in self.watched:
            force = force_quotas and watched.name == "quota file"
            if force:
                self._quotas_dirty = False
            before = watched.state()
            try:
                watched.poll(now, force=force)
            except (SQLAlchemyError, SalespulseError) as exc:
                log.warning("%s not checked: %s; trying again at the next poll", watched.name, str(exc).splitlines()[0])
            changed |= watched.state() != before
            self.metrics.refused.labels(watched.name).set(1 if watched.refused else 0)
        return changed

    def _after_sync(self, _source: str) -> None:
        """New reps may make a quota file that was refused for unknown reps valid: load it again."""
        self._quotas_dirty = True

    # -- one job run -----------------------------------------------------------------
    def _run(self, job_id: str, kind: str, work: Callable[[], Outcome]) -> None:
        if self.stop.is_set() or not self.lease.held():
            log.info("%s not started: %s", job_id, "stopping" if self.stop.is_set() else "not the leader")
            return
        started = time.monotonic()
        with self._lock:
            self.running[job_id] = started
        try:
            outcome = work()
        except SalespulseError as exc:
            outcome = Outcome("failed", error=str(exc))
        except Exception as exc:  # a bug in one job must not end the daemon: log its traceback, run it next time
            log.exception("%s crashed", job_id)
            outcome = Outcome("failed", error=f"{type(exc).__name__}: {exc}")
        finally:
            with self._lock:
                self.running.pop(job_id, None)
            if kind != "outbox":  # a sync or a check frees tens of MB at once; the outbox next to nothing
                trim_malloc()
        duration = time.monotonic() - started
        fields = {"event": "job", "job": job_id, "status": outcome.status, "duration_s": round(duration, 3)}
        fields |= outcome.counts
        if outcome.error:
            fields["error"] = outcome.error
        level = logging.ERROR if outcome.status == "failed" else logging.INFO
        log.log(level, "%s %s in %.2f s", job_id, outcome.status, duration, extra={"fields": fields})
        self.metrics.job_runs.labels(kind, outcome.status).inc()
        self.job_state[job_id] = {
            "last_run_at": self.clock().isoformat(timespec="seconds"),
            "status": outcome.status,
            "duration_s": round(duration, 3),
            "error": outcome.error,
        }

    # -- health and status -------------------------------------------------------------
    def health(self) -> Health:
        interval = timedelta(minutes=self.settings.sync.interval_minutes)
        max_age_min = self.service.health_max_sync_age_minutes
        max_age = timedelta(minutes=max_age_min) if max_age_min else 3 * interval
        return check_health(
            self.engine,
            self.sources,
            self.clock(),
            started_at=self.started_at,
            max_age=max_age,
            loop_seen_at=self.loop_seen_at,
            loop_max_gap=timedelta(seconds=max(10 * TICK_S, self.service.reload_poll_s * 3)),
        )

    def state(self) -> dict[str, Any]:
        jobs = {job_id: dict(entry) for job_id, entry in self.job_state.items()}
        for job in self.scheduler.get_jobs():
            entry = jobs.setdefault(job.id, {})
            if job.next_run_time is not None:
                entry["next_run_at"] = job.next_run_time.isoformat(timespec="seconds")
        return {"files": {w.name: w.state() for w in self.watched}, "jobs": jobs, "running": sorted(self.running)}

    def _write_state(self, role: str) -> None:
        now = self.clock()
        values = {"role": role, "seen_at": now, "state": json.dumps(self.state(), default=str)}
        try:
            with self.engine.begin() as conn:
                conn.execute(  # rows of daemons gone for a week are history nobody reads
                    delete(daemon_instances).where(daemon_instances.c.seen_at < now - STATUS_KEPT)
                )
                changed = conn.execute(
                    update(daemon_instances).where(daemon_instances.c.holder == self.lease.holder).values(**values)
                ).rowcount
                if not changed:
                    conn.execute(
                        insert(daemon_instances).values(holder=self.lease.holder, started_at=self.started_at, **values)
                    )
        except SQLAlchemyError as exc:
            log.warning("status row not written: %s", str(exc).splitlines()[0])

    # -- stopping ------------------------------------------------------------------------
    def _install_signals(self) -> None:
        def stop(signum: int, _frame: object) -> None:
            if self.stop.is_set():
                return
            log.info(
                "%s received: stopping (at most %.0f s)",
                signal.Signals(signum).name,
                self.service.stop_timeout_s,
                extra={"fields": {"event": "stopping"}},
            )
            self.stop.set()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)

    def _shutdown(self) -> int:
        deadline = time.monotonic() + self.service.stop_timeout_s
        self.scheduler.pause()
        while self.running and time.monotonic() < deadline:
            time.sleep(0.1)
        abandoned = sorted(self.running)
        self.scheduler.shutdown(wait=False)
        self.lease.release()
        self.metrics.leader.set(0)
        self._write_state("stopped")
        if self.endpoint is not None:
            self.endpoint.stop()
        if abandoned:
            log.warning(
                "stopped with jobs still running after %.0f s: %s (their uncommitted work rolls back; "
                "the next run resumes)",
                self.service.stop_timeout_s,
                ", ".join(abandoned),
                extra={"fields": {"event": "stopped", "abandoned": ",".join(abandoned)}},
            )
            logging.shutdown()
            sys.stderr.flush()
            os._exit(0)  # the pool's threads would hold the interpreter's exit past the bound
        log.info("stopped", extra={"fields": {"event": "stopped"}})
        return 0
