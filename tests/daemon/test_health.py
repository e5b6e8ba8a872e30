"""/healthz: 200 while the loop runs and every stream synced within the threshold, else 503 with reasons."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, insert

from daemon.health import check_health
from models.tables import sync_runs

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
MAX_AGE = timedelta(minutes=45)


def run(warehouse: Engine, source: str, stream: str, minutes_ago: float, status: str = "ok") -> None:
    finished = NOW - timedelta(minutes=minutes_ago)
    with warehouse.begin() as conn:
        conn.execute(
            insert(sync_runs).values(
                source=source, stream=stream, full=False, status=status, started_at=finished, finished_at=finished
            )
        )


def health(warehouse: Engine, *, started_minutes_ago: float = 600, loop_seconds_ago: float = 1):
    return check_health(
        warehouse,
        ["salesforce", "hubspot"],
        NOW,
        started_at=NOW - timedelta(minutes=started_minutes_ago),
        max_age=MAX_AGE,
        loop_seen_at=NOW - timedelta(seconds=loop_seconds_ago),
        loop_max_gap=timedelta(seconds=15),
    )


@pytest.mark.parametrize(
    ("runs", "reasons"),
    [
        ([("salesforce", "reps", 10), ("hubspot", "reps", 44)], []),
        (
            [("salesforce", "reps", 10), ("salesforce", "opportunities", 50), ("hubspot", "reps", 1)],
            ["salesforce/opportunities: last successful sync 2026-12-01 11:10:00Z, 50.0 min ago (threshold 45.0 min)"],
        ),
        ([("salesforce", "reps", 10)], ["hubspot: no successful sync yet (threshold 45.0 min)"]),
    ],
)
def test_freshness_per_stream(warehouse: Engine, runs: list, reasons: list[str]) -> None:
    for source, stream, ago in runs:
        run(warehouse, source, stream, ago)
    run(warehouse, "hubspot", "reps", 0, status="failed")  # a failed run does not make anything fresh
    result = health(warehouse)
    assert (result.ok, list(result.reasons)) == (not reasons, reasons)
    assert result.text() == ("ok\n" if not reasons else "".join(f"{r}\n" for r in reasons))


def test_a_new_daemon_is_not_blamed_for_syncs_it_had_no_time_to_run(warehouse: Engine) -> None:
    assert health(warehouse, started_minutes_ago=5).ok
    assert not health(warehouse, started_minutes_ago=50).ok


def test_a_stuck_main_loop_is_unhealthy(warehouse: Engine) -> None:
    run(warehouse, "salesforce", "reps", 1)
    run(warehouse, "hubspot", "reps", 1)
    result = health(warehouse, loop_seconds_ago=60)
    assert result.reasons == ("the daemon's main loop has not run for 60 s",)
