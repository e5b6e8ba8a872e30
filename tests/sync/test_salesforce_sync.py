"""Salesforce into the warehouse, end to end: the real simple-salesforce against the fake
Salesforce serving a generated company, through the sync engine, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from pydantic import SecretStr
from sqlalchemy import Engine, func, select

from connectors.retry import RetryPolicy
from connectors.salesforce import SalesforceConnector
from models.clock import utc_now
from models.database import open_warehouse
from models.settings import CompanySettings, SalesforceSettings, Settings
from models.tables import opportunities, quarantine, sync_runs, sync_state
from sandbox.company import SCALES, Scale, mutate
from sandbox.runner import Sandbox
from sync.cursor import Cursor
from sync.engine import SyncEngine
from tests.sync.company_checks import actual, checksum, expected

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
        want = expected(box.store, box.truth, "salesforce", table)
        got = actual(engine, "salesforce", table)
        assert len(got) == len(set(got)), f"{table}: duplicate rows"
        assert set(got) == want, f"{table}: {len(want - set(got))} missing, {len(set(got) - want)} unexpected"
        assert checksum(got) == checksum(want)


def test_full_then_incremental_sync_equals_the_company(warehouse_url: str, box: Sandbox) -> None:
    engine = open_warehouse(warehouse_url)
    settings = settings_for(box)
    results = sync(engine, settings)
    assert {r.stream: r.status for r in results} == dict.fromkeys(
        [
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
    assert by_stream["opportunities"].written == changed
    assert by_stream["opportunities"].deleted == len(summary.deleted["salesforce"])
    assert_warehouse_equals_company(engine, box)
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


def test_many_records_sharing_the_cursor_timestamp_across_pages_are_all_kept(tmp_path: Path) -> None:
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
