"""The sync engine: run each stream of a connector from its stored cursor into the warehouse.

Per page, in one transaction: upsert the valid rows, quarantine the rejected ones (and
release those that came back valid), soft-delete what the CRM deleted, and store the
advanced cursor. A crash at any instant leaves the warehouse and cursor consistent: the
next run re-reads from the last committed cursor and upserts are idempotent, so nothing
is lost and nothing is counted twice.

A stream that fails keeps its cursor and is reported in ``sync_runs``; streams that need
its data (deals need reps and stages) are skipped in that run rather than quarantining
everything for a missing owner. A stream that quarantined more than
``sync.max_quarantine_share`` of what it read is ``degraded``: its good rows are committed,
but a share that large is a configuration problem (a missing rate, a rep not synced), and
the run says so with the most frequent reason.

Deleting a deal soft-deletes its stage changes, close-date changes and activities in the
same transaction (and once more at the end of the run, for children written meanwhile by
a parallel stream); children written for an already deleted deal are deleted as written.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import partial
from typing import Any

from sqlalchemy import Connection, Engine, and_, func, insert, select, union, update
from sqlalchemy.exc import SQLAlchemyError

from connectors import retry
from connectors.base import Connector, Deleted, Rejected, Stream, StreamContext
from models.clock import Clock
from models.database import gather_statistics
from models.errors import FatalError, RetriableError
from models.logs import RedactSecrets
from models.records import Record
from models.settings import Settings
from models.tables import (
    DERIVED_SINCE,
    activities,
    close_date_changes,
    exchange_rates,
    opportunities,
    quarantine,
    quotas,
    stage_changes,
    sync_runs,
    sync_state,
)
from sync import close_dates, rollups, workers
from sync.currency import RateBook, reconvert, store_rates
from sync.cursor import Cursor, advance, in_order, is_boundary_duplicate, lower_bound
from sync.lock import heartbeat, source_lock
from sync.prefetch import prefetch
from sync.progress import LogProgress, Progress, StreamProgress
from sync.quarantine import fixed_records, mark_stale, reason_group, top_reasons
from sync.quota_file import apply_file_precedence
from sync.rows import STREAM_TABLES, Lookups, StreamTable, Unusable, to_row, warehouse_id
from sync.writer import (
    DEAL_CHILDREN,
    begin_bulk_load,
    cascade_deletions,
    cascade_from_deals,
    ensure_indexes,
    inherit_deal_deletion,
    mark_deleted,
    quarantine_records,
    release_from_quarantine,
    save_cursor,
    upsert,
)

log = logging.getLogger("salespulse.sync")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

_ERROR_CHARS = 2000  # of an unexpected exception's text kept in sync_runs.error

# Streams whose records reference rows another stream provides.
DEPENDS_ON = {
    "opportunities": ("reps", "stages", "exchange_rates"),
    "leads": ("reps",),
    "quotas": ("reps", "exchange_rates"),
}
COMPLETED = ("ok", "degraded")  # the stream read to its end: what depends on it may run


@dataclass
class StreamResult:
    source: str
    stream: str
    status: str  # ok | degraded | failed | skipped
    read: int = 0
    written: int = 0
    quarantined: int = 0
    deleted: int = 0
    released: int = 0  # quarantined records valid again today (a rep, stage or rate arrived)
    duration_s: float = 0.0
    error: str | None = None
    last_stamp: datetime | None = None  # the latest replication stamp served so far in this run
    reasons: Counter[str] = field(default_factory=Counter)  # quarantine reasons of this run, grouped

    @property
    def completed(self) -> bool:
        return self.status in COMPLETED

    @property
    def summary(self) -> str:
        text = (
            f"status={self.status} read={self.read} written={self.written} "
            f"quarantined={self.quarantined} released={self.released} deleted={self.deleted} "
            f"duration={self.duration_s:.1f}s"
        )
        return f"{text} error={self.error!r}" if self.error else text


StreamWork = Callable[[Stream, StreamProgress], StreamResult]


class SyncEngine:
    def __init__(
        self,
        engine: Engine,
        settings: Settings,
        clock: Clock,
        progress: Progress | None = None,
        *,
        should_stop: Callable[[], bool] = lambda: False,
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.clock = clock
        self.progress = progress or LogProgress()
        self._redact = RedactSecrets(settings.secret_values()).redact
        # The daemon's shutdown: asked between batches (each batch and its cursor are committed), so a
        # stopping daemon leaves at a checkpoint and the next run resumes there.
        self.should_stop = should_stop

    def sync_source(self, connector: Connector, *, full: bool = False) -> list[StreamResult]:
        """Every stream of the connector, up to ``sync.workers`` at once, each after the streams it needs."""
        source = connector.source
        with source_lock(self.engine, source, self.clock, self.settings.sync.lock_timeout_s) as holder:
            started_at = self.clock()
            first_sync = not self._has_rows(source)
            streams = connector.streams()

            def work(stream: Stream, progress: StreamProgress) -> StreamResult:
                return self._run_stream(source, stream, holder, started_at, progress, full=full)

            if self.settings.sync.workers > 1 and workers.available():
                results = self._run_forked(connector, streams, work)
            else:
                results = self._run_in_turn(source, streams, work)
            self._derive(source, started_at, first_sync=first_sync)
        return results

    def _run_in_turn(self, source: str, streams: list[Stream], work: StreamWork) -> list[StreamResult]:
        results: list[StreamResult] = []
        failed: set[str] = set()
        for stream in streams:
            if self.should_stop():
                log.info("source=%s stopping: %d stream(s) not started this run", source, len(streams) - len(results))
                break
            missing = failed.intersection(DEPENDS_ON.get(stream.target, ()))
            if missing:
                result = self._skipped(source, stream, missing)
            else:
                result = work(stream, self.progress.stream(source, stream.name))
            if not result.completed:
                failed.add(stream.target)
            results.append(result)
        return results

    def _run_forked(self, connector: Connector, streams: list[Stream], work: StreamWork) -> list[StreamResult]:
        """Streams in worker processes; one starts when a slot is free and the streams it needs have ended."""
        source = connector.source
        pool = workers.WorkerPool(self.settings.sync.workers)
        results: dict[int, StreamResult] = {}
        failed: set[str] = set()
        waiting = list(range(len(streams)))
        targets = [stream.target for stream in streams]
        try:
            while waiting or pool.running:
                while not pool.full and (slot := next_startable(targets, waiting, pool.running)) is not None:
                    stream = streams[slot]
                    waiting.remove(slot)
                    missing = failed.intersection(DEPENDS_ON.get(stream.target, ()))
                    if missing:
                        results[slot] = self._skipped(source, stream, missing)
                        failed.add(stream.target)
                        continue
                    # The child must not inherit a pooled socket (HTTP or database) the parent also holds.
                    connector.close()
                    self.engine.dispose()
                    pool.start(slot, partial(work, stream), self.progress.stream(source, stream.name))
                if pool.running:
                    worker = pool.next_finished()
                    stream = streams[worker.slot]
                    result = worker.result or self._worker_died(source, stream, worker.process.exitcode)
                    worker.progress.finish(result.summary)
                    if not result.completed:
                        failed.add(stream.target)
                    results[worker.slot] = result
        finally:
            pool.stop()
        return [results[i] for i in range(len(streams))]

    # -- one stream ----------------------------------------------------------------
    def _run_stream(
        self, source: str, stream: Stream, holder: str, sync_started: datetime, progress: StreamProgress, *, full: bool
    ) -> StreamResult:
        spec = STREAM_TABLES[stream.target]
        result = StreamResult(source, stream.name, "running")
        t0 = time.monotonic()
        stream_started = self.clock()
        with self.engine.begin() as conn:
            stored = Cursor.from_json(
                conn.execute(
                    select(sync_state.c.cursor).where(sync_state.c.source == source, sync_state.c.stream == stream.name)
                ).scalar_one_or_none()
            )
            run_id = conn.execute(
                insert(sync_runs).values(
                    source=source,
                    stream=stream.name,
                    full=full,
                    status="running",
                    started_at=stream_started,
                    cursor_before=stored.to_json(),
                )
            ).inserted_primary_key[0]
            lookups = Lookups.load(conn, source, self.settings.company)
        cursor, bulk = stored, False
        keeping_alive = retry.keepalive.set(partial(self._heartbeat, source, holder))
        try:  # from here every way out closes the run row (finally below)
            result.released = self._release_fixed(source, stream, spec, lookups)
            with self.engine.begin() as conn:
                in_quarantine = set(
                    conn.execute(
                        select(quarantine.c.external_id).where(
                            quarantine.c.source == source, quarantine.c.stream == stream.name
                        )
                    ).scalars()
                )
                ensure_indexes(conn, spec.table)
                bulk = begin_bulk_load(conn, spec.table)
            # Whether a written child row may belong to a deal deleted in an earlier run (HubSpot keeps an
            # archived deal's engagements live). Not on a first load: every deleted deal is then this run's,
            # and the cascade at the end of the sync covers those.
            orphans = spec.table in DEAL_CHILDREN and not bulk
            whole = full or stream.reads_whole
            cursor = Cursor() if whole else stored
            since = None if whole else lower_bound(stored, timedelta(seconds=self.settings.sync.lookback_s))
            context = StreamContext(since=since, started_at=sync_started)
            for batch in transactions(prefetch(stream.get_pages(context)), self.settings.sync.batch_size):
                cursor = self._write_page(
                    source, stream, spec, batch, cursor, lookups, in_quarantine, holder, sync_started, result, orphans
                )
                progress.advance(len(batch))
                if self.should_stop():
                    result.status = "stopped"
                    result.error = "stopped at a checkpoint by the daemon's shutdown; the next run resumes there"
                    break
            else:
                if whole and spec.deletable:
                    result.deleted += self._delete_unseen(source, stream, spec, stream_started)
                if spec.table is exchange_rates:
                    with self.engine.begin() as conn:
                        store_rates(conn, source, RateBook.load(conn, self.settings.company))
                result.status = "ok"
                self._judge_quarantine(result)
        except (FatalError, RetriableError) as exc:
            result.status = "failed"
            result.error = str(exc)
        except BaseException as exc:
            # A bug, a database error, Ctrl-C: the run still records how it ended (below), then the
            # exception goes on; otherwise its row would say 'running' for ever.
            result.status = "failed" if isinstance(exc, Exception) else "interrupted"
            result.error = self._redact(": ".join(filter(None, (type(exc).__name__, str(exc)))))[:_ERROR_CHARS]
            raise
        finally:
            try:
                if bulk:
                    with self.engine.begin() as conn:
                        ensure_indexes(conn, spec.table)
            finally:
                retry.keepalive.reset(keeping_alive)
                result.duration_s = time.monotonic() - t0
                self._finish_run(run_id, result, cursor)
                progress.finish(result.summary)
                level = logging.INFO if result.status == "ok" else logging.ERROR
                log.log(level, "source=%s stream=%s %s", source, stream.name, result.summary)
                for reason, n in result.reasons.most_common():
                    log.warning("source=%s stream=%s quarantined=%d reason=%r", source, stream.name, n, reason)
        return result

    def _has_rows(self, source: str) -> bool:
        """Whether the source has synced deals or quotas before (amounts converted with older rates)."""
        with self.engine.connect() as conn:
            return any(
                conn.execute(select(t.c.id).where(t.c.source == source).limit(1)).first() is not None
                for t in (opportunities, quotas)
            )

    def _judge_quarantine(self, result: StreamResult) -> None:
        """Degraded: a share of the run quarantined too large (and too many) to be a few bad records."""
        share = self.settings.sync.max_quarantine_share
        many = result.quarantined >= self.settings.sync.degraded_min_records
        if many and result.quarantined > share * result.read:
            result.status = "degraded"
            result.error = (
                f"quarantined {result.quarantined:,} of {result.read:,} records read "
                f"({result.quarantined / result.read:.1%} > sync.max_quarantine_share {share:.0%}); "
                f"top reason: {top_reasons(result.reasons, 1)}"
            )

    def _release_fixed(self, source: str, stream: Stream, spec: StreamTable, lookups: Lookups) -> int:
        """Release quarantined records that today's reps, stages and rates make valid, a page per transaction."""
        released = 0
        now = self.clock()
        for page in fixed_records(self.engine, source, stream.name, spec, lookups, now, self.settings.sync.batch_size):
            rows = {spec.key(row): row for _, row in page}
            with self.engine.begin() as conn:
                upsert(conn, spec.table, list(rows.values()), spec.conflict, spec.update_columns, spec.derived)
                released += release_from_quarantine(conn, source, stream.name, [e for e, _ in page])
                if spec.table in DEAL_CHILDREN:
                    inherit_deal_deletion(conn, spec.table, [row["id"] for row in rows.values()])
        if released:
            log.info(
                "source=%s stream=%s released %d record(s) from quarantine: valid today", source, stream.name, released
            )
        return released

    def _write_page(
        self,
        source: str,
        stream: Stream,
        spec: StreamTable,
        page: list[Any],
        cursor: Cursor,
        lookups: Lookups,
        in_quarantine: set[str],
        holder: str,
        sync_started: datetime,
        result: StreamResult,
        orphans: bool = False,
    ) -> Cursor:
        now = self.clock()
        rows: dict[Any, dict[str, Any]] = {}
        valid_ids: list[str] = []
        rejected: list[Rejected] = []
        deletions: list[tuple[str, datetime]] = []
        seen: list[tuple[str, datetime | None]] = []
        key = spec.key
        boundary = cursor.value
        for item in page:
            value = item.updated_at if isinstance(item, Record) else item.replication_value
            seen.append((item.external_id, value))
            if value == boundary and is_boundary_duplicate(cursor, item.external_id, value):
                continue
            result.read += 1
            if isinstance(item, Record):
                try:
                    row = to_row(spec, item, lookups, now)
                except Unusable as exc:
                    # The normalized record, not the CRM's payload: it is checked again at each run's start.
                    rejected.append(Rejected(item.external_id, item.model_dump(mode="json"), exc.message, value))
                    continue
                # One statement must not touch a row twice (PostgreSQL refuses): keep the last version.
                rows[key(row)] = row
                valid_ids.append(item.external_id)
            elif isinstance(item, Deleted):
                deletions.append((warehouse_id(source, item.external_id), item.deleted_at))
            else:
                rejected.append(item)
        result.last_stamp = in_order(result.last_stamp, seen, stream.name)
        with self.engine.begin() as conn:
            upsert(conn, spec.table, list(rows.values()), spec.conflict, spec.update_columns, spec.derived)
            quarantine_records(conn, source, stream.name, rejected, now)
            mark_stale(conn, spec, source, stream.name, [r.external_id for r in rejected], now)
            back = in_quarantine.intersection(valid_ids)
            release_from_quarantine(conn, source, stream.name, back)
            if spec.deletable:
                result.deleted += mark_deleted(conn, spec.table, deletions, now)
            gone = [i.external_id for i in page if isinstance(i, Deleted)]
            if gone:  # a record deleted in the CRM is no longer a problem to fix
                release_from_quarantine(conn, source, stream.name, gone)
                in_quarantine.difference_update(gone)
            if spec.table is opportunities:
                cascade_deletions(conn, deletions, now)
            elif orphans and rows:
                inherit_deal_deletion(conn, spec.table, [row["id"] for row in rows.values()])
            cursor = advance(cursor, seen, sync_started)
            save_cursor(conn, source, stream.name, cursor.to_json(), now)
            heartbeat(conn, source, holder, self.clock)
        in_quarantine.difference_update(back)
        in_quarantine.update(r.external_id for r in rejected)
        result.written += len(rows)
        result.quarantined += len(rejected)
        result.reasons.update(reason_group(r.reason) for r in rejected)
        return cursor

    def _heartbeat(self, source: str, holder: str) -> None:
        """The lock's heartbeat while a stream waits (Bulk API polling, back-off)."""
        try:
            with self.engine.begin() as conn:
                heartbeat(conn, source, holder, self.clock)
        except SQLAlchemyError as exc:  # a busy database must not fail the wait; the next beat may pass
            log.warning("source=%s lock heartbeat not written: %s", source, type(exc).__name__)

    def _delete_unseen(self, source: str, stream: Stream, spec: StreamTable, stream_started: datetime) -> int:
        """After a complete --full read: rows of this stream not seen in it were deleted in the CRM."""
        table = spec.table
        still_quarantined = select(quarantine.c.external_id).where(
            quarantine.c.source == source, quarantine.c.stream == stream.name
        )
        conditions = [
            table.c.source == source,
            table.c.deleted_at.is_(None),
            table.c.synced_at < stream_started,
            table.c.external_id.not_in(still_quarantined),
        ]
        for column, values in stream.scope.items():
            conditions.append(table.c[column].in_(values))
        now = self.clock()
        with self.engine.begin() as conn:
            gone = conn.execute(update(table).where(and_(*conditions)).values(deleted_at=now, synced_at=now)).rowcount
            if table is opportunities and gone:
                cascade_from_deals(conn, source, now, now)
            return gone or 0

    def _skipped(self, source: str, stream: Stream, missing: set[str]) -> StreamResult:
        reason = f"skipped: {', '.join(sorted(missing))} failed in this run"
        result = StreamResult(source, stream.name, "skipped", error=reason)
        now = self.clock()
        with self.engine.begin() as conn:
            conn.execute(
                insert(sync_runs).values(
                    source=source,
                    stream=stream.name,
                    full=False,
                    status="skipped",
                    started_at=now,
                    finished_at=now,
                    duration_s=0.0,
                    error=reason,
                )
            )
        log.error("source=%s stream=%s %s", source, stream.name, result.summary)
        return result

    def _worker_died(self, source: str, stream: Stream, exitcode: int | None) -> StreamResult:
        """A worker that ended without a result (killed, out of memory, a bug): its run failed, its cursor stands."""
        how = f"was killed by signal {-exitcode}" if exitcode is not None and exitcode < 0 else f"exited ({exitcode})"
        error = f"the worker process {how} before the stream finished; see the log above; the next run resumes"
        with self.engine.begin() as conn:
            closed = conn.execute(
                update(sync_runs)
                .where(sync_runs.c.source == source, sync_runs.c.stream == stream.name, sync_runs.c.status == "running")
                .values(status="failed", finished_at=self.clock(), error=error)
            ).rowcount
            if not closed:  # the worker recorded how its run ended before it exited: say that
                error = (
                    conn.execute(
                        select(sync_runs.c.error)
                        .where(sync_runs.c.source == source, sync_runs.c.stream == stream.name)
                        .order_by(sync_runs.c.id.desc())
                        .limit(1)
                    ).scalar_one_or_none()
                    or error
                )
        log.error("source=%s stream=%s status=failed error=%r", source, stream.name, error)
        return StreamResult(source, stream.name, "failed", error=error)

    def _finish_run(self, run_id: int, result: StreamResult, cursor: Cursor) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                update(sync_runs)
                .where(sync_runs.c.id == run_id)
                .values(
                    status=result.status,
                    finished_at=self.clock(),
                    records_read=result.read,
                    records_written=result.written,
                    records_quarantined=result.quarantined,
                    records_deleted=result.deleted,
                    duration_s=round(result.duration_s, 3),
                    cursor_after=cursor.to_json(),
                    error=result.error,
                )
            )

    # -- derived columns -------------------------------------------------------------
    def _derive(self, source: str, started_at: datetime, *, first_sync: bool) -> None:
        """Keep ``stage_entered_at``, ``last_activity_at`` and the close-date push count on the deal row,
        ``entered_at`` on each stage change and the per-day stage rollups (the rule queries need them fast);
        re-convert amounts if a rate changed; delete children of deals deleted while their streams ran.

        Over the rows written since the last run that got this far, not only this run's: a run cut off
        before this step (killed, interrupted) stored pages its successor does not read again (the cursor
        moved past them), so only this watermark, saved in the same transaction, brings them in. The
        watermark saved is the instant this step began: every row of this run was written by then (its
        streams have ended), so the next run does not derive them again (after a full sync, every row).
        """
        began = self.clock()
        with self.engine.begin() as conn:
            stored = conn.execute(
                select(sync_state.c.cursor).where(sync_state.c.source == source, sync_state.c.stream == DERIVED_SINCE)
            ).scalar_one_or_none()
            # No watermark on a warehouse with rows: an older version's, or a first sync cut off; derive all once.
            since = min(started_at, datetime.fromisoformat(stored)) if stored else started_at if first_sync else EPOCH
            if first_sync or since == EPOCH:  # a bulk load: plan what follows with statistics
                gather_statistics(conn)
            cascade_from_deals(conn, source, since, self.clock())
            book = RateBook.load(conn, self.settings.company)
            changed = reconvert(conn, source, book, self.clock(), all_new=first_sync)
            if changed:
                log.info("source=%s re-converted %d amount(s): the exchange rates changed", source, changed)
            _derive_stage_entered(conn, source)
            rederived = _derive_stage_left_entered(conn, source, since)
            _derive_last_activity(conn, source, since)
            _derive_close_date_history(conn, source, since)
            days = rollups.refresh(conn, source, since, rederived)
            if days:
                log.info("source=%s rebuilt %d day(s) of the stage rollups", source, days)
            apply_file_precedence(conn)
            save_cursor(conn, source, DERIVED_SINCE, began.isoformat(), self.clock())


def next_startable(targets: list[str], waiting: list[int], running: Iterable[int]) -> int | None:
    """The waiting stream to start now, or None.

    A stream can start when the streams it needs have ended and no running stream loads its
    table. Of those, the one heading the longest queue for a table goes first: streams of one
    table take turns (Salesforce tasks then events, HubSpot's five engagement kinds), so that
    queue is the sync's critical path. ``targets`` are the streams' tables by position;
    ``waiting`` and ``running`` are positions.
    """
    busy = {targets[i] for i in running}
    queued = Counter(targets[i] for i in waiting)
    best: int | None = None
    for slot in waiting:
        unfinished = busy | {targets[i] for i in waiting if i != slot}
        if targets[slot] in busy or unfinished.intersection(DEPENDS_ON.get(targets[slot], ())):
            continue
        if best is None or queued[targets[slot]] > queued[targets[best]]:
            best = slot
    return best


def transactions(pages: Iterable[list[Any]], size: int) -> Iterator[list[Any]]:
    """Whole pages joined until a batch holds at least ``size`` items: one transaction each.

    A commit per 2,000-record page spent a tenth of a full sync rewriting the same index
    pages to the WAL; a crash loses at most one batch of progress, never data.
    """
    batch: list[Any] = []
    for page in pages:
        batch.extend(page)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _derive_stage_entered(conn: Connection, source: str) -> None:
    o, sc = opportunities, stage_changes
    entered = (
        select(func.max(sc.c.changed_at))
        .where(sc.c.opportunity_id == o.c.id, sc.c.to_stage == o.c.stage)
        .scalar_subquery()
    )
    conn.execute(
        update(o)
        .where(o.c.source == source, o.c.stage_entered_at.is_(None))
        .values(stage_entered_at=func.coalesce(entered, o.c.created_at))
    )


def _derive_stage_left_entered(conn: Connection, source: str, since: datetime) -> set[date]:
    """``entered_at`` of every change of the deals with a change not derived yet (written in this run or in a
    run killed before this step: the upsert writes it null) or written in this run (its creation may have moved).

    Recomputed for all of such a deal's changes, in one window-function pass: a change synced late (older than
    the deal's latest) moves the ``entered_at`` of the change after it too. Returns the UTC days of the changes
    whose ``entered_at`` moved (their time in stage is counted in the rollups of that day).
    """
    sc, o = stage_changes, opportunities
    underived = select(sc.c.opportunity_id).where(sc.c.source == source, sc.c.entered_at.is_(None))
    rewritten = select(o.c.id).where(o.c.source == source, o.c.synced_at >= since)
    previous = (
        select(
            sc.c.id,
            func.coalesce(
                func.lag(sc.c.changed_at).over(partition_by=sc.c.opportunity_id, order_by=(sc.c.changed_at, sc.c.id)),
                o.c.created_at,
                sc.c.changed_at,  # a change whose deal is not in the warehouse: no time in stage to measure
            ).label("entered"),
        )
        .join_from(sc, o, o.c.id == sc.c.opportunity_id, isouter=True)
        .where(sc.c.opportunity_id.in_(union(underived, rewritten)))
        .subquery("previous")
    )
    moved = conn.execute(
        update(sc)
        .where(sc.c.id == previous.c.id, sc.c.entered_at.is_distinct_from(previous.c.entered))
        .values(entered_at=previous.c.entered)
        .returning(sc.c.changed_at)
    ).scalars()
    return {changed.astimezone(UTC).date() for changed in moved}


def _derive_last_activity(conn: Connection, source: str, since: datetime) -> None:
    o, a = opportunities, activities
    latest = (
        select(func.max(a.c.occurred_at))
        .where(a.c.opportunity_id == o.c.id, a.c.deleted_at.is_(None))
        .scalar_subquery()
    )
    touched = select(a.c.opportunity_id).where(a.c.source == source, a.c.synced_at >= since)
    conn.execute(
        update(o)
        .where(o.c.source == source, (o.c.synced_at >= since) | o.c.id.in_(touched))
        .values(last_activity_at=func.coalesce(latest, o.c.last_activity_at))
    )


def _derive_close_date_history(conn: Connection, source: str, since: datetime) -> None:
    """The close-date summary of the deals whose close-date changes (or row) were written since ``since``."""
    o, cdc = opportunities, close_date_changes
    touched = select(cdc.c.opportunity_id).where(cdc.c.source == source, cdc.c.synced_at >= since)
    close_dates.summarise(conn, (o.c.source == source) & ((o.c.synced_at >= since) | o.c.id.in_(touched)))
