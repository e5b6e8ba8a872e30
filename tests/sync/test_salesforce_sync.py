"""Salesforce into the warehouse, end to end: the real simple-salesforce against the fake
Salesforce serving a generated company, through the sync engine, on SQLite and PostgreSQL."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from pydantic import SecretStr
from sqlalchemy import Engine, func, insert, select

from connectors.retry import RetryPolicy
from connectors.salesforce import SalesforceConnector
from connectors.salesforce_bulk import MAX_WAIT_S, POLL_FIRST_S, POLL_MAX_S
from connectors.salesforce_rates import ExchangeRatesStream
from models.clock import utc_now
from models.database import open_warehouse
from models.settings import CompanySettings, SalesforceSettings, Settings, SyncSettings
from models.tables import (
    activities,
    close_date_changes,
    leads,
    opportunities,
    quarantine,
    quotas,
    reps,
    stage_changes,
    stages,
    sync_runs,
    sync_state,
)
from sandbox.company import SCALES, Scale, mutate
from sandbox.runner import Sandbox
from sync.cursor import Cursor
from sync.engine import SyncEngine
from tests.sync.company_checks import actual, checksum, differences, expected_rows

ANCHOR = date(2026, 11, 20)
NEXT_PAGE = r"/queryAll/\w+-\d+"  # a nextRecordsUrl request: the first page of a query passed
TABLES = ("opportunities", "leads", "reps", "stage_changes", "activities")


@pytest.fixture
def box(tmp_path: Path) -> Iterator[Sandbox]:
    with Sandbox(tmp_path / "sandbox", scale=SCALES["small"], seed=7, anchor=ANCHOR) as sandbox:
        yield sandbox


def settings_for(box: Sandbox) -> Settings:
    settings = Settings()
    settings.salesforce = SalesforceSettings(
        enabled=True,
        instance_url=box.salesforce.base_url,
        session_id=SecretStr(box.tokens["salesforce"]),
        ca_bundle=box.ca_pem,
        timeout_s=5,
    )
    rates = {code: Decimal(str(rate)) for code, rate in box.truth.generator["fx_rates"].items()}
    settings.company = CompanySettings(fx_rates=rates)
    settings.sync.lookback_s = 0
    return settings


class Sleeps(list):
    """A RetryPolicy sleep that records instead of waiting."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def sync(engine: Engine, settings: Settings, *, sleeps: Sleeps | None = None, full: bool = False):
    policy = RetryPolicy(max_retries=3, sleep=sleeps if sleeps is not None else Sleeps())
    connector = SalesforceConnector(settings.salesforce, policy, reporting_currency="USD")
    try:
        return SyncEngine(engine, settings, utc_now).sync_source(connector, full=full)
    finally:
        connector.close()


def assert_warehouse_equals_company(engine: Engine, box: Sandbox) -> None:
    for table in TABLES:
        assert differences(engine, box.store, box.truth, "salesforce", table) is None
        got = actual(engine, "salesforce", table)
        assert checksum(got) == checksum(expected_rows(box.store, box.truth, "salesforce", table))


LOOKBACKS = pytest.mark.parametrize("lookback_s", [0, SyncSettings().lookback_s], ids=["no lookback", "default"])


@LOOKBACKS
def test_full_then_incremental_sync_equals_the_company(warehouse_url: str, box: Sandbox, lookback_s: int) -> None:
    engine = open_warehouse(warehouse_url)
    settings = settings_for(box)
    settings.sync.lookback_s = lookback_s
    results = sync(engine, settings)
    assert {r.stream: r.status for r in results} == dict.fromkeys(
        [
            "exchange_rates",
            "reps",
            "stages",
            "leads",
            "opportunities",
            "stage_changes",
            "close_date_changes",
            "tasks",
            "events",
            "quotas",
        ],
        "ok",
    )
    assert_warehouse_equals_company(engine, box)
    invalid = box.truth.invalid_ids("salesforce", "deals")
    with engine.connect() as conn:
        quarantined = set(
            conn.execute(select(quarantine.c.external_id).where(quarantine.c.stream == "opportunities")).scalars()
        )
    assert quarantined == invalid

    summary = mutate(box.store, seed=3, changed_fraction=0.05, added=20, deleted=10, crm="salesforce")
    results = sync(engine, settings)
    by_stream = {r.stream: r for r in results}
    changed = len(summary.changed["salesforce"]) + len(summary.added["salesforce"])
    # The lookback re-reads the records stamped just before the cursor: written again, harmlessly.
    assert (
        by_stream["opportunities"].written == changed
        if lookback_s == 0
        else by_stream["opportunities"].written >= changed
    )
    assert by_stream["opportunities"].deleted == len(summary.deleted["salesforce"])
    assert_warehouse_equals_company(engine, box)
    # The check can fail: a stage change stored twice (under a second id, as a bug would) is caught,
    # although no primary key is duplicated.
    with engine.begin() as conn:
        row = dict(conn.execute(select(stage_changes).limit(1)).mappings().one())
        conn.execute(
            insert(stage_changes).values({**row, "id": f"{row['id']}b", "external_id": f"{row['external_id']}b"})
        )
    found = differences(engine, box.store, box.truth, "salesforce", "stage_changes")
    assert found is not None
    assert "0 missing, 1 extra or stale (1 stored more than once)" in found
    engine.dispose()


def test_resync_from_scratch_keeps_primary_keys(tmp_path: Path, box: Sandbox) -> None:
    first = open_warehouse(f"sqlite:///{tmp_path}/a.db")
    second = open_warehouse(f"sqlite:///{tmp_path}/b.db")
    settings = settings_for(box)
    sync(first, settings)
    sync(second, settings, full=True)
    ids = [set(c.execute(select(opportunities.c.id)).scalars()) for c in (first.connect(), second.connect())]
    assert ids[0] == ids[1]


@pytest.mark.parametrize(
    ("kind", "options"),
    [
        ("rate_limit", {"times": 5}),  # Salesforce answers 403 REQUEST_LIMIT_EXCEEDED
        ("server_error", {"times": 2, "status": 503}),
        ("server_error", {"times": 2, "status": 500}),
        ("truncate", {"times": 1}),  # the page was served: its retry finds the cursor gone and re-queries
        ("drop", {"times": 2}),
    ],
)
def test_transient_faults_mid_paging_are_retried_and_nothing_is_lost(
    tmp_path: Path, box: Sandbox, kind: str, options: dict
) -> None:
    engine = open_warehouse(f"sqlite:///{tmp_path}/w.db")
    settings = settings_for(box)
    settings.sync.max_retries = 6
    settings.sync.workers = 1  # the back-off sleeps are recorded in this process
    # Faults on the next pages of every query (the first pages pass).
    box.salesforce.faults.arm(kind, path=NEXT_PAGE, skip=0, **options)
    sleeps = Sleeps()
    policy = RetryPolicy(max_retries=6, sleep=sleeps)
    connector = SalesforceConnector(settings.salesforce, policy, reporting_currency="USD")
    results = SyncEngine(engine, settings, utc_now).sync_source(connector)
    assert all(r.status == "ok" for r in results), [r.summary for r in results if r.status != "ok"]
    assert len(sleeps) == options["times"]
    assert_warehouse_equals_company(engine, box)


def test_retries_exhausted_stop_the_stream_with_its_cursor_unchanged(tmp_path: Path, box: Sandbox) -> None:
    engine = open_warehouse(f"sqlite:///{tmp_path}/w.db")
    settings = settings_for(box)
    settings.sync.batch_size = 2000  # a transaction per Salesforce page
    box.salesforce.faults.arm("server_error", path=NEXT_PAGE, times=100, status=503)
    results = sync(engine, settings)
    tasks = next(r for r in results if r.stream == "tasks")
    assert tasks.status == "failed"
    assert "still failing after 3 retries" in tasks.error
    with engine.connect() as conn:
        cursor = Cursor.from_json(
            conn.execute(select(sync_state.c.cursor).where(sync_state.c.stream == "tasks")).scalar_one()
        )
        run = conn.execute(select(sync_runs).where(sync_runs.c.stream == "tasks")).mappings().one()
    assert run["status"] == "failed"
    assert run["records_written"] == 2000  # the first page committed, with its cursor
    assert cursor.value is not None
    box.salesforce.faults.clear()
    assert all(r.status == "ok" for r in sync(engine, settings))
    assert_warehouse_equals_company(engine, box)


def test_expired_session_mid_paging_stops_cleanly_and_a_new_session_resumes(tmp_path: Path, box: Sandbox) -> None:
    engine = open_warehouse(f"sqlite:///{tmp_path}/w.db")
    settings = settings_for(box)
    box.salesforce.faults.arm("expired_session", path=NEXT_PAGE, times=100)
    results = sync(engine, settings)
    failed = [r for r in results if r.status == "failed"]
    assert failed
    assert all("session expired" in r.error.lower() for r in failed)
    assert box.tokens["salesforce"] not in " ".join(r.error for r in failed)
    box.salesforce.faults.clear()
    assert all(r.status == "ok" for r in sync(engine, settings))
    assert_warehouse_equals_company(engine, box)


@LOOKBACKS
def test_many_records_sharing_the_cursor_timestamp_across_pages_are_all_kept(tmp_path: Path, lookback_s: int) -> None:
    """4,500 deals with one SystemModstamp span three pages; the run dies after the first."""
    with Sandbox(tmp_path / "sb", scale=Scale("tiny", reps=4, deals=0, leads=0), seed=1, anchor=ANCHOR) as box:
        store = box.store
        owner = (
            store.connect()
            .execute("SELECT id FROM users WHERE crm='salesforce' AND title != 'Sales Manager'")
            .fetchone()[0]
        )
        stage = store.connect().execute("SELECT api_name FROM stages WHERE crm='salesforce' LIMIT 1").fetchone()[0]
        stamp = "2026-11-20T10:00:00.000Z"
        rows = [
            {
                "crm": "salesforce",
                "id": f"006{n:012d}AAA",
                "seq": n,
                "name": f"Deal {n}",
                "owner_id": owner,
                "amount": "100",
                "currency": "USD",
                "pipeline_id": "default",
                "stage_id": stage,
                "close_date": "2026-12-31",
                "created_at": stamp,
                "modified_at": stamp,
            }
            for n in range(1, 4501)
        ]
        store.insert_many("deals", rows)
        engine = open_warehouse(f"sqlite:///{tmp_path}/w.db")
        settings = settings_for(box)
        settings.sync.batch_size = 2000  # a transaction per page, so the first page's boundary is committed
        settings.sync.lookback_s = lookback_s
        box.salesforce.faults.arm("server_error", path=NEXT_PAGE, times=100, status=503)
        results = sync(engine, settings)
        assert next(r for r in results if r.stream == "opportunities").status == "failed"
        with engine.connect() as conn:
            assert conn.execute(select(func.count()).select_from(opportunities)).scalar_one() == 2000
        box.salesforce.faults.clear()
        # A late record with the same stamp arrives before the next run.
        late = dict(rows[0], id="006999999999999AAA", seq=9999)
        store.insert_many("deals", [late])
        results = sync(engine, settings)
        opps = next(r for r in results if r.stream == "opportunities")
        assert opps.status == "ok"
        assert opps.read == 2501  # the 2,000 stored at the boundary are recognised and skipped
        with engine.connect() as conn:
            assert conn.execute(select(func.count()).select_from(opportunities)).scalar_one() == 4501


def test_cursor_never_passes_the_sync_start(tmp_path: Path, box: Sandbox) -> None:
    engine = open_warehouse(f"sqlite:///{tmp_path}/w.db")
    settings = settings_for(box)
    future = (utc_now() + timedelta(days=2)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    deal = box.store.connect().execute("SELECT id FROM deals WHERE crm='salesforce' LIMIT 1").fetchone()[0]
    box.store.connect().execute("UPDATE deals SET modified_at = ? WHERE crm='salesforce' AND id = ?", (future, deal))
    started = utc_now()
    sync(engine, settings)
    with engine.connect() as conn:
        cursor = Cursor.from_json(
            conn.execute(select(sync_state.c.cursor).where(sync_state.c.stream == "opportunities")).scalar_one()
        )
    assert started <= cursor.value <= utc_now()


# -- Bulk API 2.0 for big first reads ------------------------------------------------------------

BULK_JOB = r"/jobs/query$"
BULK_RESULTS = r"/jobs/query/\w+/results"
WAREHOUSE = (reps, stages, leads, opportunities, stage_changes, close_date_changes, activities, quotas)


def bulk_settings(box: Sandbox, threshold: int = 500) -> Settings:
    """Objects of at least 500 rows (leads, deals, history, tasks, events) go through Bulk API 2.0,
    in result sets of 400 records, one transaction each."""
    settings = settings_for(box)
    settings.salesforce.bulk_threshold = threshold
    settings.sync.batch_size = 400
    box.salesforce.bulk.max_records = 400
    return settings


def jobs_created(box: Sandbox) -> int:
    return sum(1 for method, path in box.salesforce.requests if method == "POST" and re.search(BULK_JOB, path))


def bulk_streams(caplog: pytest.LogCaptureFixture) -> set[str]:
    said = (re.match(r"stream=(\w+) reads \w+ through Bulk API 2\.0", r.getMessage()) for r in caplog.records)
    return {m[1] for m in said if m}


def warehouse_rows(engine: Engine) -> dict[str, set[tuple]]:
    """Every synced row but its sync time and the quota file's surrogate key."""
    with engine.connect() as conn:
        return {
            t.name: set(conn.execute(select(*[c for c in t.c if c.name not in ("synced_at", "id")])).all())
            for t in WAREHOUSE
        }


def quarantined(engine: Engine) -> set[tuple]:
    with engine.connect() as conn:
        return set(conn.execute(select(quarantine.c.stream, quarantine.c.external_id, quarantine.c.reason)).all())


def test_first_full_sync_through_bulk_equals_the_company(
    warehouse_url: str, box: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    engine = open_warehouse(warehouse_url)
    settings = bulk_settings(box)
    caplog.set_level(logging.INFO, logger="salespulse.connectors.salesforce")
    results = sync(engine, settings)
    assert all(r.status == "ok" for r in results), [r.summary for r in results if r.status != "ok"]
    assert_warehouse_equals_company(engine, box)
    used = bulk_streams(caplog)
    assert used == {r.stream for r in results if r.read >= 500}
    assert {"leads", "opportunities", "stage_changes", "tasks"} <= used
    assert jobs_created(box) == len(used)
    assert box.salesforce.bulk_jobs == []  # each job deleted once read

    mutate(box.store, seed=3, changed_fraction=0.05, added=20, deleted=10, crm="salesforce")
    caplog.clear()
    assert all(r.status == "ok" for r in sync(engine, settings))
    assert bulk_streams(caplog) == set()  # with a cursor, reads are incremental, through REST
    assert jobs_created(box) == len(used)
    assert_warehouse_equals_company(engine, box)
    engine.dispose()


def test_bulk_and_rest_give_the_same_warehouse_and_quarantine(tmp_path: Path, box: Sandbox) -> None:
    through_rest = open_warehouse(f"sqlite:///{tmp_path}/rest.db")
    through_bulk = open_warehouse(f"sqlite:///{tmp_path}/bulk.db")
    read_through_rest = sync(through_rest, bulk_settings(box, threshold=0))
    assert jobs_created(box) == 0
    sync(through_bulk, bulk_settings(box, threshold=1))  # every object, even the stages
    # One job per non-empty object, but the exchange rates: two small objects always read whole through REST.
    bulk_capable = [r for r in read_through_rest if r.read >= 1 and r.stream != ExchangeRatesStream.name]
    assert jobs_created(box) == len(bulk_capable)
    assert warehouse_rows(through_bulk) == warehouse_rows(through_rest)
    assert quarantined(through_bulk) == quarantined(through_rest)
    assert {e for s, e, _ in quarantined(through_bulk) if s == "opportunities"} == box.truth.invalid_ids(
        "salesforce", "deals"
    )


@pytest.mark.parametrize(
    ("kind", "said"),
    [("job_failed", "ended Failed: QUERY_TIMEOUT"), ("job_aborted", "ended Aborted: no reason given")],
)
def test_a_bulk_job_that_fails_stops_its_stream_with_no_cursor(
    tmp_path: Path, box: Sandbox, kind: str, said: str
) -> None:
    engine = open_warehouse(f"sqlite:///{tmp_path}/w.db")
    settings = bulk_settings(box)
    box.salesforce.faults.arm(kind, path=BULK_JOB, method="POST")  # the first bulk stream's job: leads
    results = {r.stream: r for r in sync(engine, settings)}
    assert results["leads"].status == "failed"
    assert said in results["leads"].error
    assert "salesforce.bulk_threshold = 0" in results["leads"].error
    assert all(r.status == "ok" for name, r in results.items() if name != "leads")
    with engine.connect() as conn:
        assert conn.execute(select(sync_state.c.cursor).where(sync_state.c.stream == "leads")).scalar() is None
    assert all(r.status == "ok" for r in sync(engine, settings))
    assert_warehouse_equals_company(engine, box)


def test_a_sync_dying_mid_bulk_resumes_incrementally_through_rest(tmp_path: Path, box: Sandbox) -> None:
    engine = open_warehouse(f"sqlite:///{tmp_path}/w.db")
    settings = bulk_settings(box)
    box.salesforce.faults.arm("server_error", path=BULK_RESULTS + r"\?.*locator=", times=1000, status=503)
    failed = [r for r in sync(engine, settings) if r.status == "failed"]
    assert {r.stream for r in failed} >= {"leads", "opportunities", "tasks"}
    assert all(r.written + r.quarantined == 400 for r in failed)  # the first result set committed
    box.salesforce.faults.clear()
    jobs = jobs_created(box)
    assert all(r.status == "ok" for r in sync(engine, settings))
    assert jobs_created(box) == jobs
    assert_warehouse_equals_company(engine, box)


def test_a_bulk_job_that_never_finishes_is_abandoned_after_a_bounded_wait(tmp_path: Path, box: Sandbox) -> None:
    engine = open_warehouse(f"sqlite:///{tmp_path}/w.db")
    box.salesforce.bulk.busy_polls = 10**6
    sleeps = Sleeps()
    results = {r.stream: r for r in sync(engine, bulk_settings(box), sleeps=sleeps)}
    assert f"was still InProgress after {MAX_WAIT_S:.0f} s and was aborted" in results["leads"].error
    backing_off = [min(POLL_FIRST_S * 2**n, POLL_MAX_S) for n in range(7)]
    assert sleeps[:7] == backing_off  # doubling from the first pause, then every POLL_MAX_S
    assert max(sleeps) == POLL_MAX_S
    assert {job["state"] for job in box.salesforce.bulk_jobs} == {"Aborted"}


@pytest.mark.parametrize(
    ("kind", "options"),
    [
        ("server_error", {"times": 2, "status": 503}),
        ("truncate", {"times": 2}),  # a cut CSV: fewer rows than Sforce-NumberOfRecords
        ("drop", {"times": 1}),
        ("rate_limit", {"times": 2}),
    ],
)
def test_transient_faults_on_bulk_results_are_retried(tmp_path: Path, box: Sandbox, kind: str, options: dict) -> None:
    engine = open_warehouse(f"sqlite:///{tmp_path}/w.db")
    box.salesforce.faults.arm(kind, path=BULK_RESULTS, **options)
    results = sync(engine, bulk_settings(box))
    assert all(r.status == "ok" for r in results), [r.summary for r in results if r.status != "ok"]
    assert box.salesforce.faults.pending == 0
    assert_warehouse_equals_company(engine, box)
