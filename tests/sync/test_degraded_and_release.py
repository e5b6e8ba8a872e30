"""Degraded runs, quarantine released when its cause is fixed, and deletes that cascade, over
a scripted connector (streams in turn and in worker processes), on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import Engine, select

from connectors.base import Deleted
from models.clock import FixedClock
from models.records import ActivityRecord, StageChangeRecord
from models.settings import CompanySettings, Settings
from models.tables import activities, opportunities, quarantine, stage_changes, sync_runs
from sync.engine import SyncEngine
from tests.sync.test_engine import ListStream, ScriptedConnector, at, base_streams, count, deal


@pytest.fixture(params=[1, 2], ids=["in-turn", "forked"])
def config(request: pytest.FixtureRequest) -> Settings:
    s = Settings()
    s.sync.workers = request.param
    s.sync.lookback_s = 0
    return s


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(at(120))


def run(engine: Engine, config: Settings, clock: FixedClock, *streams: ListStream, full: bool = False) -> dict:
    results = SyncEngine(engine, config, clock).sync_source(ScriptedConnector(*streams), full=full)
    return {r.stream: r for r in results}


@pytest.mark.parametrize(
    ("bad", "share", "minimum", "status"),
    [
        (0, 0.05, 10, "ok"),
        (5, 0.05, 10, "ok"),  # 5 % of 100 is not more than 5 %
        (6, 0.05, 5, "degraded"),
        (6, 0.05, 10, "ok"),  # too few to be more than bad records
        (30, 0.05, 10, "degraded"),
        (30, 0.5, 10, "ok"),
        (100, 0.05, 10, "degraded"),
    ],
)
def test_a_stream_that_quarantined_more_than_the_share_is_degraded_with_its_top_reason(
    warehouse: Engine, config: Settings, clock: FixedClock, bad: int, share: float, minimum: int, status: str
) -> None:
    config.sync.max_quarantine_share = share
    config.sync.degraded_min_records = minimum
    page = [deal(i, 10 + i // 2, currency="CHF" if i < bad else "USD") for i in range(100)]  # ascending stamps

    result = run(warehouse, config, clock, *base_streams([page]))["opportunities"]

    assert result.status == status
    assert result.written == 100 - bad, "the good rows are committed either way"
    assert result.quarantined == bad
    if status == "degraded":
        assert f"quarantined {bad} of 100" in result.error
        assert "no exchange rate for CHF" in result.error
        with warehouse.connect() as conn:
            row = conn.execute(
                select(sync_runs.c.status, sync_runs.c.error).where(sync_runs.c.stream == "opportunities")
            )
            assert row.one() == (status, result.error)
    if bad:
        assert result.reasons.most_common(1)[0][1] == bad, "reasons count together without their particulars"


def test_a_rate_added_after_the_run_releases_every_deal_on_the_next_plain_run(
    warehouse: Engine, config: Settings, clock: FixedClock
) -> None:
    pages = [[deal(i, 10 + i, currency="CHF" if i % 2 else "USD") for i in range(40)]]
    first = run(warehouse, config, clock, *base_streams(pages))
    assert first["opportunities"].quarantined == 20

    config.company = CompanySettings(fx_rates={"CHF": Decimal("1.25")})
    clock.advance(timedelta(minutes=5))
    second = run(warehouse, config, clock, *base_streams(pages))

    assert second["opportunities"].released == 20
    assert second["opportunities"].status == "ok"
    assert count(warehouse, quarantine) == 0
    with warehouse.connect() as conn:
        converted = conn.execute(select(opportunities.c.amount_reporting).where(opportunities.c.currency == "CHF"))
        assert set(converted.scalars()) == {Decimal("1250.00")}


def test_a_deal_deleted_takes_its_history_and_activities_in_the_same_run(
    warehouse: Engine, config: Settings, clock: FixedClock
) -> None:
    deals = [[deal(1, 10), deal(2, 11)]]
    history = ListStream(
        "stage_changes",
        [
            [
                StageChangeRecord(external_id=f"h{i}", opportunity_id=f"d{i}", to_stage="Proposal", changed_at=at(12))
                for i in (1, 2)
            ]
        ],
    )
    acts = ListStream(
        "activities",
        [
            [
                ActivityRecord(
                    external_id=f"a{i}", type="call", opportunity_id=f"d{i}", occurred_at=at(12), updated_at=at(12)
                )
                for i in (1, 2)
            ]
        ],
    )
    run(warehouse, config, clock, *base_streams(deals), history, acts)
    deleted = [[Deleted("d1", deleted_at=at(60), replication_value=at(60))]]
    # The CRM sends the deletion; a later page re-sends a history row of the deleted deal.
    history.pages = [
        [StageChangeRecord(external_id="h1b", opportunity_id="d1", to_stage="Closed Won", changed_at=at(61))]
    ]
    run(warehouse, config, clock, *base_streams(deals + deleted), history, acts)

    with warehouse.connect() as conn:
        for table, survivor in ((stage_changes, "salesforce:h2"), (activities, "salesforce:a2")):
            live = conn.execute(select(table.c.id).where(table.c.deleted_at.is_(None))).scalars()
            assert list(live) == [survivor], f"{table.name}: only the live deal's rows stay active"
    assert count(warehouse, opportunities, opportunities.c.deleted_at.is_not(None)) == 1
