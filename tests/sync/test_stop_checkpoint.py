"""The daemon's shutdown stops a sync between committed batches; the next run resumes there and
the warehouse ends exactly as if nothing had stopped (nothing lost, nothing twice)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import func, select

from connectors.registry import build_connector
from connectors.retry import RetryPolicy
from models.clock import utc_now
from models.database import open_warehouse
from models.settings import load_settings
from models.tables import sync_runs
from sandbox.company import SCALES
from sandbox.runner import Sandbox
from sync.engine import SyncEngine
from tests.sync.company_checks import actual, expected


def after(n: int) -> Callable[[], bool]:
    """A stop request that arrives after ``n`` questions (asked before each stream, after each batch)."""
    asked = [0]

    def should_stop() -> bool:
        asked[0] += 1
        return asked[0] > n

    return should_stop


@pytest.mark.parametrize(
    "questions",
    [
        0,  # before the first stream: nothing starts
        2,  # between streams: reps done, stages never starts
        5,  # mid-stream: after the first batch of leads (500 of about 1,400)
    ],
)
def test_a_stopped_sync_resumes_to_the_same_warehouse(
    warehouse_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, questions: int
) -> None:
    with Sandbox(tmp_path / "sb", scale=SCALES["small"], seed=5, anchor=date(2026, 11, 20)) as box:
        for name, value in box.env().items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("SALESPULSE_HUBSPOT__ENABLED", "false")
        monkeypatch.setenv("SALESPULSE_SYNC__BATCH_SIZE", "500")
        monkeypatch.setenv("SALESPULSE_SYNC__LOOKBACK_S", "0")
        settings = load_settings()
        engine = open_warehouse(warehouse_url)

        def run(should_stop: Callable[[], bool]) -> list:
            connector = build_connector("salesforce", settings, RetryPolicy(max_retries=1, sleep=lambda _s: None))
            try:
                return SyncEngine(engine, settings, utc_now, should_stop=should_stop).sync_source(connector)
            finally:
                connector.close()

        stopped = run(after(questions))
        statuses = [r.status for r in stopped]
        assert set(statuses) <= {"ok", "stopped"}
        assert "stopped" not in statuses[:-1]
        assert (statuses[-1:] == ["stopped"]) == (questions == 5)
        with engine.connect() as conn:
            recorded = conn.execute(
                select(func.count()).select_from(sync_runs).where(sync_runs.c.status == "stopped")
            ).scalar()
        assert recorded == statuses.count("stopped")  # the streams after it never started

        resumed = run(lambda: False)
        assert all(r.status == "ok" for r in resumed)
        assert len(statuses) < len(resumed)  # the stopped run was cut short
        for table in ("opportunities", "leads", "stage_changes", "activities"):
            got = actual(engine, "salesforce", table)
            assert len(got) == len(set(got)), table
            assert set(got) == expected(box.store, box.truth, "salesforce", table), table
        engine.dispose()
