"""Both CRMs of the generated company, synced through the settings and the connector
registry exactly as `service.py sync` does, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import select

from connectors.registry import build_connector, enabled_sources
from connectors.retry import RetryPolicy
from models.clock import utc_now
from models.database import open_warehouse
from models.settings import load_settings
from models.tables import quarantine
from sandbox.company import SCALES, mutate
from sandbox.runner import Sandbox
from sync.engine import SyncEngine
from tests.sync.company_checks import actual, checksum, differences, expected_rows

TABLES = ("opportunities", "leads", "reps", "stage_changes", "activities")


@pytest.fixture(params=["0", None], ids=["no lookback", "default lookback"])
def box(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> Iterator[Sandbox]:
    with Sandbox(tmp_path / "sandbox", scale=SCALES["small"], seed=11, anchor=date(2026, 11, 20)) as sandbox:
        for name, value in sandbox.env().items():
            monkeypatch.setenv(name, value)
        if request.param is not None:
            monkeypatch.setenv("SALESPULSE_SYNC__LOOKBACK_S", request.param)
        yield sandbox


def sync_all(url: str) -> dict[str, list]:
    settings = load_settings()
    engine = open_warehouse(url)
    results = {}
    for source in enabled_sources(settings):
        connector = build_connector(source, settings, RetryPolicy(max_retries=2, sleep=lambda _s: None))
        try:
            results[source] = SyncEngine(engine, settings, utc_now).sync_source(connector)
        finally:
            connector.close()
    engine.dispose()
    return results


def test_both_crms_sync_to_the_company_then_follow_changes(
    warehouse_url: str, box: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SALESPULSE_DATABASE__URL", warehouse_url)
    results = sync_all(warehouse_url)
    assert sorted(results) == ["hubspot", "salesforce"]
    assert all(r.status == "ok" for runs in results.values() for r in runs)
    engine = open_warehouse(warehouse_url)
    for crm in ("salesforce", "hubspot"):
        for table in TABLES:
            assert differences(engine, box.store, box.truth, crm, table) is None
            got = actual(engine, crm, table)
            assert checksum(got) == checksum(expected_rows(box.store, box.truth, crm, table))
        with engine.connect() as conn:
            quarantined = set(
                conn.execute(
                    select(quarantine.c.external_id).where(
                        quarantine.c.source == crm, quarantine.c.stream == "opportunities"
                    )
                ).scalars()
            )
        assert quarantined == box.truth.invalid_ids(crm, "deals")

    mutate(box.store, seed=2, changed_fraction=0.05, added=15, deleted=8)
    results = sync_all(warehouse_url)
    assert all(r.status == "ok" for runs in results.values() for r in runs)
    for crm in ("salesforce", "hubspot"):
        for table in ("opportunities", "activities", "stage_changes"):
            assert differences(engine, box.store, box.truth, crm, table) is None
    engine.dispose()
