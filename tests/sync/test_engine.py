"""The sync engine over a scripted connector, on SQLite and PostgreSQL.

The connector here is a test double of the Stream interface (pages from a list, an
error at a chosen page); the real connectors are tested against the sandbox servers.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, ClassVar

import pytest
from sqlalchemy import Engine, delete, func, insert, select

from connectors.base import Connector, Deleted, Item, Stream, StreamContext
from connectors.errors import StreamFailed
from connectors.retry import KEEPALIVE_S, RetryPolicy
from models.clock import FixedClock, utc_now
from models.records import ActivityRecord, OpportunityRecord, QuotaRecord, RepRecord, StageChangeRecord, StageRecord
from models.settings import CompanySettings, Settings
from models.tables import opportunities, quarantine, reps, stage_changes, sync_locks, sync_runs, sync_state
from sync import workers
from sync.cursor import Cursor
from sync.engine import SyncEngine, next_startable, transactions
from sync.lock import SyncLocked

T0 = datetime(2026, 5, 1, tzinfo=UTC)


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


def rep(i: int, minute: int = 0) -> RepRecord:
    return RepRecord(external_id=f"u{i}", name=f"Rep {i}", email=f"r{i}@x.com", updated_at=at(minute))


def stage(name: str, order: int, closed: bool = False, won: bool = False) -> StageRecord:
    return StageRecord(
        external_id=f"s-{name}",
        pipeline="default",
        api_name=name,
        label=name,
        sort_order=order,
        probability=0.1 * order,
        is_closed=closed,
        is_won=won,
        updated_at=at(0),
    )


def deal(
    i: int,
    minute: int,
    *,
    owner: str = "u1",
    stage_name: str = "Prospecting",
    currency: str = "USD",
    amount: str = "1000",
) -> OpportunityRecord:
    return OpportunityRecord(
        external_id=f"d{i}",
        name=f"Deal {i}",
        owner_id=owner,
        amount=Decimal(amount),
        currency=currency,
        pipeline="default",
        stage=stage_name,
        is_closed=False,
        is_won=False,
        created_at=at(0),
        close_date=date(2026, 6, 30),
        updated_at=at(minute),
    )


class ListStream(Stream):
    """Serves scripted pages; ``fail_at`` raises instead of yielding that page."""

    primary_key = "Id"
    replication_key = "SystemModstamp"

    def __init__(self, name: str, pages: list[list[Item]], fail_at: int | None = None) -> None:
        self.name = name  # type: ignore[misc]
        self.target = name  # type: ignore[misc]
        self.record_model = OpportunityRecord  # type: ignore[misc]
        self.pages = pages
        self.fail_at = fail_at

    def get_pages(self, context: StreamContext) -> Iterator[list[Item]]:
        for n, page in enumerate(self.pages):
            if n == self.fail_at:
                raise StreamFailed("scripted failure", stream=self.name)
            value = lambda item: getattr(item, "updated_at", None) or item.replication_value  # noqa: E731
            yield [i for i in page if context.since is None or value(i) >= context.since]


class BuggyStream(ListStream):
    """Serves its first page, then raises what a bug or an operator would."""

    def __init__(self, name: str, pages: list[list[Item]], exc: BaseException) -> None:
        super().__init__(name, pages)
        self.exc = exc

    def get_pages(self, context: StreamContext) -> Iterator[list[Item]]:  # noqa: ARG002
        yield self.pages[0]
        raise self.exc


class ScriptedConnector(Connector):
    source = "salesforce"
    streams_: ClassVar[list[Stream]]

    def __init__(self, *streams: Stream) -> None:
        self._streams = list(streams)

    def streams(self) -> list[Stream]:
        return self._streams


@pytest.fixture(params=[1, 2], ids=["in-turn", "forked"])
def settings(request: pytest.FixtureRequest) -> Settings:
    """Every engine test runs streams one after another in-process, and in worker processes."""
    s = Settings()
    s.sync.workers = request.param
    if request.param > 1:
        assert workers.available(), "this process runs threads: the engine would not fork"
    s.company = CompanySettings(fx_rates={"EUR": Decimal("1.10")})
    s.sync.lookback_s = 0
    return s


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(at(120))


def base_streams(deal_pages: list[list[Item]], fail_at: int | None = None) -> list[Stream]:
    return [
        ListStream("reps", [[rep(1), rep(2)]]),
        ListStream("stages", [[stage("Prospecting", 1), stage("Proposal", 2), stage("Closed Won", 3, True, True)]]),
        ListStream("opportunities", deal_pages, fail_at=fail_at),
    ]


def count(engine: Engine, table: Any, *where: Any) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table).where(*where)).scalar_one()


def test_pages_land_with_ids_references_and_reporting_amounts(warehouse: Engine, settings: Settings, clock) -> None:
    streams = base_streams([[deal(1, 5), deal(2, 6, currency="EUR", amount="200")], [deal(3, 7, owner="u2")]])
    results = SyncEngine(warehouse, settings, clock).sync_source(ScriptedConnector(*streams))
    assert [(r.stream, r.status, r.written) for r in results] == [
        ("reps", "ok", 2),
        ("stages", "ok", 3),
        ("opportunities", "ok", 3),
    ]
    with warehouse.connect() as conn:
        row = conn.execute(select(opportunities).where(opportunities.c.id == "salesforce:d2")).mappings().one()
        assert row["owner_id"] == "salesforce:u1"
        assert row["stage_id"] == "salesforce:s-Prospecting"
        assert row["amount_reporting"] == Decimal("220.00")
        assert row["probability"] == pytest.approx(0.1)
        assert row["stage_entered_at"] == at(0)  # no stage change known: since creation
        cursor = conn.execute(select(sync_state.c.cursor).where(sync_state.c.stream == "opportunities")).scalar_one()
    assert Cursor.from_json(cursor) == Cursor(at(7), frozenset({"d3"}))


def test_unusable_records_are_quarantined_and_the_page_still_lands(
    warehouse: Engine, settings: Settings, clock
) -> None:
    page = [deal(1, 5, owner="ghost"), deal(2, 5, stage_name="Imaginary"), deal(3, 5, currency="CHF"), deal(4, 5)]
    SyncEngine(warehouse, settings, clock).sync_source(ScriptedConnector(*base_streams([page])))
    with warehouse.connect() as conn:
        reasons = dict(conn.execute(select(quarantine.c.external_id, quarantine.c.reason)).all())
        assert conn.execute(select(opportunities.c.external_id)).scalars().all() == ["d4"]
    assert "owner ghost is not a known salesforce rep" in reasons["d1"]
    assert "stage 'Imaginary' is not a stage" in reasons["d2"]
    assert "no exchange rate for CHF" in reasons["d3"]


def test_a_quarantined_record_that_comes_back_valid_leaves_quarantine(
    warehouse: Engine, settings: Settings, clock
) -> None:
    SyncEngine(warehouse, settings, clock).sync_source(ScriptedConnector(*base_streams([[deal(1, 5, owner="ghost")]])))
    assert count(warehouse, quarantine) == 1
    clock.advance(timedelta(minutes=10))
    SyncEngine(warehouse, settings, clock).sync_source(ScriptedConnector(*base_streams([[deal(1, 9)]])))
    assert count(warehouse, quarantine) == 0
    assert count(warehouse, opportunities) == 1


def test_failure_mid_stream_keeps_the_last_committed_cursor(warehouse: Engine, settings: Settings, clock) -> None:
    settings.sync.batch_size = 1  # every page its own transaction
    pages = [[deal(1, 5)], [deal(2, 6)], [deal(3, 7)]]
    results = SyncEngine(warehouse, settings, clock).sync_source(ScriptedConnector(*base_streams(pages, fail_at=2)))
    assert results[-1].status == "failed"
    assert "scripted failure" in results[-1].error
    with warehouse.connect() as conn:
        cursor = conn.execute(select(sync_state.c.cursor).where(sync_state.c.stream == "opportunities")).scalar_one()
        run = conn.execute(select(sync_runs).where(sync_runs.c.stream == "opportunities")).mappings().one()
    assert Cursor.from_json(cursor).value == at(6)
    assert run["status"] == "failed"
    assert run["records_written"] == 2
    # The next run resumes from the cursor (inclusive) and gets the rest.
    SyncEngine(warehouse, settings, clock).sync_source(ScriptedConnector(*base_streams(pages)))
    with warehouse.connect() as conn:
        rerun = conn.execute(select(sync_runs).where(sync_runs.c.stream == "opportunities").order_by(sync_runs.c.id))
        rerun = rerun.mappings().all()[-1]
    assert Cursor.from_json(rerun["cursor_before"]).value == at(6)
    assert rerun["records_read"] == 1  # deal 2 is the boundary record already stored
    assert count(warehouse, opportunities) == 3


def test_a_failure_loses_the_uncommitted_batch_only(warehouse: Engine, settings: Settings, clock) -> None:
    settings.sync.batch_size = 2
    pages = [[deal(1, 5)], [deal(2, 6)], [deal(3, 7)], [deal(4, 8)]]
    results = SyncEngine(warehouse, settings, clock).sync_source(ScriptedConnector(*base_streams(pages, fail_at=3)))
    assert results[-1].status == "failed"
    with warehouse.connect() as conn:
        cursor = conn.execute(select(sync_state.c.cursor).where(sync_state.c.stream == "opportunities")).scalar_one()
    # Pages 1+2 committed together; page 3 waited for page 4 and went down with the failure.
    assert Cursor.from_json(cursor).value == at(6)
    assert count(warehouse, opportunities) == 2


class DyingStream(ListStream):
    """Its process is SIGKILLed (out of memory, say) once its first page is committed."""

    def __init__(self, name: str, pages: list[list[Item]], warehouse: Engine) -> None:
        super().__init__(name, pages)
        self.warehouse = warehouse

    def get_pages(self, context: StreamContext) -> Iterator[list[Item]]:  # noqa: ARG002
        yield self.pages[0]
        while count(self.warehouse, sync_state, sync_state.c.stream == self.name) == 0:
            time.sleep(0.01)
        os.kill(os.getpid(), signal.SIGKILL)
        yield from self.pages[1:]


def test_a_worker_that_dies_fails_its_stream_and_the_rest_goes_on(warehouse: Engine, clock) -> None:
    settings = Settings(company=CompanySettings(fx_rates={"EUR": Decimal("1.10")}))
    settings.sync.batch_size = 1
    assert workers.available()
    streams = base_streams([[rep(3)]])
    streams[2] = DyingStream("opportunities", [[deal(1, 5)], [deal(2, 6)]], warehouse)
    moved = StageChangeRecord(
        external_id="h1", opportunity_id="d1", to_stage="Proposal", changed_at=at(7), updated_at=at(7)
    )
    streams.append(ListStream("stage_changes", [[moved]]))
    results = SyncEngine(warehouse, settings, clock).sync_source(ScriptedConnector(*streams))
    statuses = {r.stream: r.status for r in results}
    assert statuses == {"reps": "ok", "stages": "ok", "opportunities": "failed", "stage_changes": "ok"}
    assert "killed by signal 9" in results[2].error
    with warehouse.connect() as conn:
        run = conn.execute(select(sync_runs).where(sync_runs.c.stream == "opportunities")).mappings().one()
        cursor = conn.execute(select(sync_state.c.cursor).where(sync_state.c.stream == "opportunities")).scalar_one()
    assert run["status"] == "failed"
    assert "killed by signal 9" in run["error"]
    assert Cursor.from_json(cursor).value == at(5)  # the first page committed before the death
    assert count(warehouse, opportunities) == 1


SALESFORCE = ["reps", "stages", "leads", "opportunities", "stage_changes", "activities", "activities", "quotas"]


@pytest.mark.parametrize(
    ("waiting", "running", "expected"),
    [
        ([0, 1, 2, 3, 4, 5, 6, 7], [], 5),  # activities come in two streams: the longest queue starts first
        ([0, 1, 2, 3, 4, 6, 7], [5], 0),  # events wait for tasks; then list order
        ([1, 2, 3, 4, 6, 7], [0, 5], 1),
        ([2, 3, 4, 6, 7], [0, 1], 4),  # leads and deals wait for reps and stages
        ([2, 3, 6, 7], [1], 2),  # leads need reps only
        ([3, 6, 7], [2], 3),
        ([6], [5], None),
        ([], [], None),
    ],
)
def test_next_startable(waiting: list[int], running: list[int], expected: int | None) -> None:
    assert next_startable(SALESFORCE, waiting, running) == expected


@pytest.mark.parametrize(
    ("pages", "size", "batches"),
    [
        ([[1, 2], [3], [4, 5, 6], [7]], 3, [[1, 2, 3], [4, 5, 6], [7]]),
        ([[1, 2], [3]], 1, [[1, 2], [3]]),  # pages are never split
        ([[1], [], [2]], 5, [[1, 2]]),
        ([], 5, []),
    ],
)
def test_pages_join_into_transactions(pages: list[list[int]], size: int, batches: list[list[int]]) -> None:
    assert list(transactions(iter(pages), size)) == batches


def test_boundary_records_are_not_counted_twice(warehouse: Engine, settings: Settings, clock) -> None:
    pages = [[deal(1, 5), deal(2, 5)], [deal(3, 5)]]
    SyncEngine(warehouse, settings, clock).sync_source(ScriptedConnector(*base_streams(pages)))
    results = SyncEngine(warehouse, settings, clock).sync_source(ScriptedConnector(*base_streams(pages)))
    assert results[-1].read == 0
    assert count(warehouse, opportunities) == 3


def test_deletions_soft_delete(warehouse: Engine, settings: Settings, clock) -> None:
    SyncEngine(warehouse, settings, clock).sync_source(ScriptedConnector(*base_streams([[deal(1, 5), deal(2, 5)]])))
    gone = Deleted("d1", deleted_at=at(50), replication_value=at(50))
    results = SyncEngine(warehouse, settings, clock).sync_source(ScriptedConnector(*base_streams([[gone]])))
    assert results[-1].deleted == 1
    with warehouse.connect() as conn:
        rows = dict(conn.execute(select(opportunities.c.external_id, opportunities.c.deleted_at)).all())
    assert rows == {"d1": at(50), "d2": None}


def test_full_sync_marks_vanished_rows_deleted(warehouse: Engine, settings: Settings, clock) -> None:
    SyncEngine(warehouse, settings, clock).sync_source(ScriptedConnector(*base_streams([[deal(1, 5), deal(2, 5)]])))
    clock.advance(timedelta(minutes=1))
    results = SyncEngine(warehouse, settings, clock).sync_source(
        ScriptedConnector(*base_streams([[deal(2, 5)]])), full=True
    )
    assert results[-1].deleted == 1
    assert count(warehouse, opportunities, opportunities.c.deleted_at.is_not(None)) == 1
    assert count(warehouse, reps, reps.c.deleted_at.is_not(None)) == 0


def test_dependent_streams_are_skipped_when_reps_fail(warehouse: Engine, settings: Settings, clock) -> None:
    streams = base_streams([[deal(1, 5)]])
    streams[0] = ListStream("reps", [[rep(1)]], fail_at=0)
    results = SyncEngine(warehouse, settings, clock).sync_source(ScriptedConnector(*streams))
    assert [r.status for r in results] == ["failed", "ok", "skipped"]
    assert count(warehouse, quarantine) == 0


def test_stage_entered_at_comes_from_the_last_move_into_the_current_stage(
    warehouse: Engine, settings: Settings, clock
) -> None:
    moves = [
        StageChangeRecord(
            external_id="h1",
            opportunity_id="d1",
            from_stage=None,
            to_stage="Prospecting",
            changed_at=at(1),
            updated_at=at(1),
        ),
        StageChangeRecord(
            external_id="h2",
            opportunity_id="d1",
            from_stage="Prospecting",
            to_stage="Proposal",
            changed_at=at(4),
            updated_at=at(4),
        ),
    ]
    streams = [*base_streams([[deal(1, 5, stage_name="Proposal")]]), ListStream("stage_changes", [moves])]
    SyncEngine(warehouse, settings, clock).sync_source(ScriptedConnector(*streams))
    with warehouse.connect() as conn:
        assert conn.execute(select(opportunities.c.stage_entered_at)).scalar_one() == at(4)
        assert conn.execute(select(func.count()).select_from(stage_changes)).scalar_one() == 2


def test_only_one_sync_per_source(warehouse: Engine, settings: Settings, clock) -> None:
    with warehouse.begin() as conn:
        conn.execute(
            insert(sync_locks).values(
                source="salesforce", holder="otherhost:1", acquired_at=at(119), heartbeat_at=at(119)
            )
        )
    with pytest.raises(SyncLocked, match="another sync of salesforce is running"):
        SyncEngine(warehouse, settings, clock).sync_source(ScriptedConnector(*base_streams([[deal(1, 5)]])))
    clock.advance(timedelta(seconds=settings.sync.lock_timeout_s + 1))
    results = SyncEngine(warehouse, settings, clock).sync_source(ScriptedConnector(*base_streams([[deal(1, 5)]])))
    assert results[-1].status == "ok"
    assert count(warehouse, sync_locks) == 0


def _index_names(engine: Engine, table: str) -> set[str]:
    from sqlalchemy import inspect

    return {ix["name"] for ix in inspect(engine).get_indexes(table)}


def test_bulk_load_into_an_empty_table_restores_every_index(warehouse: Engine, settings: Settings, clock) -> None:
    before = _index_names(warehouse, "opportunities")
    assert before == {ix.name for ix in opportunities.indexes}
    results = SyncEngine(warehouse, settings, clock).sync_source(
        ScriptedConnector(*base_streams([[deal(1, 5)], [deal(2, 6)], [deal(3, 7)]], fail_at=2))
    )
    assert results[-1].status == "failed"  # a failure mid-load still puts the indexes back
    assert _index_names(warehouse, "opportunities") == before
    from alembic import command

    from models.database import alembic_config

    command.check(alembic_config(warehouse))


@pytest.mark.parametrize(
    ("exc", "status", "error"),
    [
        (RuntimeError("a bug in a mapper"), "failed", "RuntimeError: a bug in a mapper"),
        (KeyError("OwnerId"), "failed", "KeyError: 'OwnerId'"),
        (KeyboardInterrupt(), "interrupted", "KeyboardInterrupt"),
    ],
)
def test_every_way_out_of_a_stream_closes_its_run(
    warehouse: Engine, settings: Settings, clock, exc: BaseException, status: str, error: str
) -> None:
    settings.sync.batch_size = 1
    streams = base_streams([])
    streams[2] = BuggyStream("opportunities", [[deal(1, 5)]], exc)
    engine = SyncEngine(warehouse, settings, clock)
    if settings.sync.workers == 1 or status == "interrupted":
        settings.sync.workers = 1
        with pytest.raises(type(exc)):
            engine.sync_source(ScriptedConnector(*streams))
    else:  # in a worker process: the parent goes on and reports the worker's own reason
        results = engine.sync_source(ScriptedConnector(*streams))
        assert (results[-1].status, results[-1].error) == ("failed", error)
    with warehouse.connect() as conn:
        run = conn.execute(select(sync_runs).where(sync_runs.c.stream == "opportunities")).mappings().one()
        cursor = conn.execute(select(sync_state.c.cursor).where(sync_state.c.stream == "opportunities")).scalar_one()
    assert (run["status"], run["error"]) == (status, error)
    assert run["finished_at"] is not None
    assert run["records_written"] == 1
    assert Cursor.from_json(run["cursor_after"]) == Cursor.from_json(cursor) == Cursor(at(5), frozenset({"d1"}))
    assert count(warehouse, sync_locks) == 0
    assert count(warehouse, sync_runs, sync_runs.c.status == "running") == 0


class WaitingStream(ListStream):
    """Waits (as a Bulk API job is polled) between its first page and the rest."""

    def __init__(self, name: str, pages: list[list[Item]], policy: RetryPolicy, wait_s: float) -> None:
        super().__init__(name, pages)
        self.policy = policy
        self.wait_s = wait_s

    def get_pages(self, context: StreamContext) -> Iterator[list[Item]]:  # noqa: ARG002
        yield self.pages[0]
        self.policy.pause(self.wait_s)
        yield from self.pages[1:]


def test_a_sync_waiting_longer_than_the_lock_timeout_keeps_its_lock(warehouse: Engine) -> None:
    clock = FixedClock(utc_now())  # a lock is taken after its process started: the clock must be real
    begin = clock()
    settings = Settings(company=CompanySettings(fx_rates={"EUR": Decimal("1.10")}))
    settings.sync.workers = 1
    settings.sync.batch_size = 1
    timeout = settings.sync.lock_timeout_s
    seen: list[tuple[datetime, datetime]] = []
    second: list[BaseException] = []

    def sleep(seconds: float) -> None:
        clock.advance(timedelta(seconds=seconds))
        with warehouse.connect() as conn:
            seen.append((clock(), conn.execute(select(sync_locks.c.heartbeat_at)).scalar_one()))
        if not second and clock() - begin > timedelta(seconds=timeout):
            try:  # a second sync starts while the first is still waiting
                SyncEngine(warehouse, settings, clock).sync_source(ScriptedConnector(*base_streams([])))
            except SyncLocked as exc:
                second.append(exc)

    streams = base_streams([])
    streams[2] = WaitingStream("opportunities", [[deal(1, 5)], [deal(2, 6)]], RetryPolicy(sleep=sleep), 2.5 * timeout)
    results = SyncEngine(warehouse, settings, clock).sync_source(ScriptedConnector(*streams))
    assert [r.status for r in results] == ["ok", "ok", "ok"]
    assert results[-1].written == 2
    assert len(second) == 1, "the second sync took the lock of a live sync"
    assert "another sync of salesforce is running" in str(second[0])
    # Seen from another host, which can only read the heartbeat, the lock never looked abandoned.
    assert max(now - beat for now, beat in seen) <= timedelta(seconds=KEEPALIVE_S)
    assert clock() - begin >= timedelta(seconds=2.5 * timeout)


def test_lock_takeover(warehouse: Engine, settings: Settings) -> None:
    """Same host: only a gone process (or a reused pid) loses its lock; another host: a quiet heartbeat."""
    me = f"{socket.gethostname()}:{os.getpid()}"
    started = utc_now()  # this process ran before; a pid reused after a restart started after the lock
    timeout = timedelta(seconds=settings.sync.lock_timeout_s)
    cases = [
        # (holder, acquired_at, heartbeat age, taken over?)
        (me, started, 2 * timeout, False),  # alive here, however quiet
        (me, started - timedelta(days=1), timedelta(0), True),  # our pid, but we started after the lock
        (f"{socket.gethostname()}:{_ended_pid()}", started, timedelta(0), True),  # process gone
        ("otherhost:1", started, timeout - timedelta(seconds=1), False),
        ("otherhost:1", started, timeout + timedelta(seconds=1), True),
    ]
    for holder, acquired, age, taken in cases:
        clock = FixedClock(started + 2 * timeout + timedelta(minutes=1))
        with warehouse.begin() as conn:
            conn.execute(delete(sync_locks))
            conn.execute(
                insert(sync_locks).values(
                    source="salesforce", holder=holder, acquired_at=acquired, heartbeat_at=clock() - age
                )
            )
        engine = SyncEngine(warehouse, settings, clock)
        if taken:
            assert engine.sync_source(ScriptedConnector(*base_streams([])))[-1].status == "ok", holder
        else:
            with pytest.raises(SyncLocked):
                engine.sync_source(ScriptedConnector(*base_streams([])))


def _ended_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_a_quota_of_an_unknown_rep_is_quarantined_with_how_to_fix_it(
    warehouse: Engine, settings: Settings, clock
) -> None:
    quota = QuotaRecord(
        external_id="q1",
        rep_id="ghost",
        period_start=date(2026, 4, 1),
        period_end=date(2026, 6, 30),
        amount=Decimal("100000"),
        currency="USD",
        updated_at=at(5),
    )
    streams = [*base_streams([]), ListStream("quotas", [[quota]])]
    SyncEngine(warehouse, settings, clock).sync_source(ScriptedConnector(*streams))
    with warehouse.connect() as conn:
        reason = conn.execute(select(quarantine.c.reason).where(quarantine.c.external_id == "q1")).scalar_one()
    assert reason.startswith("quota owner ghost is not a known salesforce rep")
    assert "assign the quota to an active user in salesforce" in reason


def test_a_stream_serving_an_older_stamp_fails_and_keeps_its_cursor(
    warehouse: Engine, settings: Settings, clock
) -> None:
    settings.sync.batch_size = 1
    pages = [[deal(1, 5)], [deal(2, 7)], [deal(3, 6)], [deal(4, 8)]]  # deal 3 goes back in time
    results = SyncEngine(warehouse, settings, clock).sync_source(ScriptedConnector(*base_streams(pages)))
    assert results[-1].status == "failed"
    assert "record d3 has replication stamp" in results[-1].error
    assert "ascending order" in results[-1].error
    with warehouse.connect() as conn:
        cursor = conn.execute(select(sync_state.c.cursor).where(sync_state.c.stream == "opportunities")).scalar_one()
    assert Cursor.from_json(cursor) == Cursor(at(7), frozenset({"d2"}))
    assert count(warehouse, opportunities) == 2  # nothing of the bad batch


def move(name: str, before: str | None, after: str, minute: int, *, synced: int | None = None) -> StageChangeRecord:
    """A stage change at ``minute``; ``synced``: the minute the CRM serves it (a late or re-read change)."""
    when = at(synced if synced is not None else minute)
    return StageChangeRecord(
        external_id=name, opportunity_id="d1", from_stage=before, to_stage=after, changed_at=at(minute), updated_at=when
    )


ENTERED_CASES = {
    # name: (first sync's changes, second sync's changes, second sync's deal or None, expected entered_at minutes)
    "in order": ([move("h1", "Prospecting", "Proposal", 4), move("h2", "Proposal", "Closed Won", 9)], [], None,
                 {"h1": 0, "h2": 4}),
    "a change synced late moves the one after it": (
        [move("h1", "Prospecting", "Closed Won", 9)], [move("h0", "Prospecting", "Proposal", 4, synced=30)], None,
        {"h0": 0, "h1": 4}),
    "a change re-read with a new time": (
        [move("h1", "Prospecting", "Proposal", 4), move("h2", "Proposal", "Closed Won", 9)],
        [move("h1", "Prospecting", "Proposal", 6, synced=30)], None, {"h1": 0, "h2": 6}),
    "the deal's creation moved": (
        [move("h1", "Prospecting", "Proposal", 4), move("h2", "Proposal", "Closed Won", 9)], [],
        deal(1, 30).model_copy(update={"created_at": at(-5)}), {"h1": -5, "h2": 4}),
}  # fmt: skip


@pytest.mark.parametrize("case", ENTERED_CASES)
def test_each_stage_change_keeps_when_the_deal_entered_the_stage_it_left(
    warehouse: Engine, settings: Settings, clock, case: str
) -> None:
    first, second, changed_deal, want = ENTERED_CASES[case]
    engine = SyncEngine(warehouse, settings, clock)
    engine.sync_source(ScriptedConnector(*base_streams([[deal(1, 5)]]), ListStream("stage_changes", [first])))
    clock.advance(timedelta(minutes=1))
    deals = [[changed_deal]] if changed_deal else [[]]
    engine.sync_source(ScriptedConnector(*base_streams(deals), ListStream("stage_changes", [second])))
    with warehouse.connect() as conn:
        got = dict(conn.execute(select(stage_changes.c.external_id, stage_changes.c.entered_at)).all())
    assert got == {name: at(minute) for name, minute in want.items()}


def test_a_run_cut_off_before_its_derived_columns_has_them_derived_by_the_next(
    warehouse: Engine, settings: Settings, clock
) -> None:
    """The derived columns cover everything written since the last run that derived them, not since this run's
    start: a run stopped after storing a page (Ctrl-C here; SIGKILL or a lost connection alike) never derives,
    and the next run re-reads nothing of what it stored (the cursor moved past it)."""
    settings.sync.workers, settings.sync.batch_size = 1, 1
    call = ActivityRecord(external_id="a1", type="call", opportunity_id="d1", occurred_at=at(20), updated_at=at(20))
    late = StageChangeRecord(external_id="h1", opportunity_id="d1", from_stage="Prospecting", to_stage="Proposal",
                             changed_at=at(25), updated_at=at(25))  # fmt: skip
    engine = SyncEngine(warehouse, settings, clock)
    cut_off = [
        BuggyStream("stage_changes", [[late]], KeyboardInterrupt()),
        BuggyStream("activities", [[call]], KeyboardInterrupt()),
    ]
    for stream in cut_off:
        with pytest.raises(KeyboardInterrupt):
            engine.sync_source(ScriptedConnector(*base_streams([[deal(1, 5)]]), stream))
        clock.advance(timedelta(minutes=1))
    engine.sync_source(ScriptedConnector(*base_streams([[]]), ListStream("activities", [[]])))
    with warehouse.connect() as conn:
        last_activity = conn.execute(select(opportunities.c.last_activity_at)).scalar_one()
        entered = conn.execute(select(stage_changes.c.entered_at)).scalar_one()
    assert (last_activity, entered) == (at(20), at(0))


class TickingClock(FixedClock):
    """A second passes at every reading: rows get the instants they would in a real run."""

    def __call__(self) -> datetime:
        self.advance(timedelta(seconds=1))
        return self.moment


def test_the_run_after_a_full_sync_derives_only_its_own_rows(
    warehouse: Engine, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """The derive watermark is the instant the derive began, not the run's start: the next run does not derive
    the whole full sync again (it rebuilt every day of the stage rollups, 2.4 s at 100k deals)."""
    settings.sync.workers = 1
    engine = SyncEngine(warehouse, settings, TickingClock(at(120)))
    moves = [StageChangeRecord(external_id=f"h{n}", opportunity_id="d1", from_stage="Prospecting", to_stage="Proposal",
                               changed_at=at(n), updated_at=at(n)) for n in (10, 20, 30)]  # fmt: skip
    engine.sync_source(ScriptedConnector(*base_streams([[deal(1, 5)]]), ListStream("stage_changes", [moves])))
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="salespulse.sync"):
        engine.sync_source(ScriptedConnector(*base_streams([[]]), ListStream("stage_changes", [[]])))
    assert not [r.getMessage() for r in caplog.records if "rebuilt" in r.getMessage()]


def _analyzed(engine: Engine) -> set[str]:
    """Tables of this warehouse the planner has statistics for."""
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            exists = conn.exec_driver_sql("SELECT name FROM sqlite_master WHERE name = 'sqlite_stat1'").first()
            return set(conn.exec_driver_sql("SELECT tbl FROM sqlite_stat1").scalars()) if exists else set()
        query = (
            "SELECT relname FROM pg_stat_user_tables WHERE schemaname = current_schema() AND last_analyze IS NOT NULL"
        )
        return set(conn.exec_driver_sql(query).scalars())


def test_a_first_sync_leaves_the_planner_statistics(warehouse: Engine, settings: Settings, clock) -> None:
    # Without them SQLite planned a fresh million-deal warehouse's joins from the wrong table (minutes).
    assert "opportunities" not in _analyzed(warehouse)
    SyncEngine(warehouse, settings, clock).sync_source(ScriptedConnector(*base_streams([[deal(1, 5), deal(2, 6)]])))
    assert {"opportunities", "reps", "stages"} <= _analyzed(warehouse)
