"""Deals deleted in the fake CRMs between syncs take their history and activities with them;
a record that turns invalid leaves its last good row marked stale; on SQLite and PostgreSQL.
"""

from __future__ import annotations

import os
import random
import signal
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select

from models.database import open_warehouse
from models.inventory import warehouse_status
from models.tables import activities, close_date_changes, opportunities, quarantine, stage_changes
from sandbox.company import Scale, mutate
from sandbox.runner import Sandbox
from tests.sync.company_checks import actual, expected, stale_stage_rollups
from tests.sync.test_exchange_rates import start, statuses, sync_all
from tests.sync.test_kill_and_resume import start_sync

CHILDREN = (stage_changes, close_date_changes, activities)


@pytest.fixture
def box(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, warehouse_url: str) -> Iterator[Sandbox]:
    sandbox = start(tmp_path, monkeypatch, warehouse_url, seed=11)
    yield sandbox
    sandbox.stop()


def active_children(engine: Engine, deal_ids: list[str]) -> dict[str, int]:
    with engine.connect() as conn:
        return {
            t.name: conn.execute(
                select(func.count()).where(t.c.opportunity_id.in_(deal_ids), t.c.deleted_at.is_(None))
            ).scalar_one()
            for t in CHILDREN
        }


@pytest.mark.parametrize("how", ["incremental", "full"])
def test_deleted_deals_leave_no_active_stage_change_close_date_change_or_activity(
    box: Sandbox, warehouse_url: str, how: str
) -> None:
    sync_all(warehouse_url)
    engine = open_warehouse(warehouse_url)
    summary = mutate(box.store, seed=4, changed_fraction=0.0, added=0, deleted=7)
    gone = [f"{crm}:{d}" for crm, ids in summary.deleted.items() for d in ids]
    assert len(gone) == 14
    before = active_children(engine, gone)
    assert all(before.values()), f"the deleted deals had history and activities: {before}"

    results = sync_all(warehouse_url, full=how == "full")
    assert set(statuses(results).values()) == {"ok"}
    with engine.connect() as conn:
        deleted = conn.execute(
            select(func.count()).where(opportunities.c.id.in_(gone), opportunities.c.deleted_at.is_not(None))
        ).scalar_one()
    valid = [g for g in gone if g.split(":", 1)[1] not in box.truth.invalid_ids(g.split(":", 1)[0], "deals")]
    assert deleted == len(valid)
    assert active_children(engine, gone) == dict.fromkeys(before, 0)
    for crm in ("salesforce", "hubspot"):  # and their moves the per-day rollups
        assert stale_stage_rollups(engine, crm) is None

    # A later run, incremental or full, brings none of them back.
    sync_all(warehouse_url, full=True)
    sync_all(warehouse_url)
    assert active_children(engine, gone) == dict.fromkeys(before, 0)
    engine.dispose()


def test_a_deal_that_turns_invalid_marks_its_row_stale_until_a_valid_version_arrives(
    box: Sandbox, warehouse_url: str
) -> None:
    sync_all(warehouse_url)
    engine = open_warehouse(warehouse_url)

    with engine.connect() as conn:  # deals that moved stage: their moves are in the per-day rollups
        moved = set(
            conn.execute(
                select(stage_changes.c.opportunity_id).where(stage_changes.c.from_stage.is_not(None))
            ).scalars()
        )

    def first_valid(crm: str, column: str) -> tuple[str, str]:
        rows = box.store.connect().execute(
            f"SELECT id, {column} FROM deals WHERE crm = ? AND deleted_at IS NULL ORDER BY seq", (crm,)
        )
        return next(
            tuple(r) for r in rows if r[0] not in box.truth.invalid_ids(crm, "deals") and f"{crm}:{r[0]}" in moved
        )

    sf_id, owner = first_valid("salesforce", "owner_id")
    hs_id, amount = first_valid("hubspot", "amount")
    sync_all(warehouse_url)  # so the next run's derive watermark is past the first run's writes
    box.store.update("deals", "salesforce", [sf_id], owner_id="005999999999999AAA")  # reassigned to nobody we know
    box.store.update("deals", "hubspot", [hs_id], amount=None)  # amount erased
    results = sync_all(warehouse_url)
    assert set(statuses(results).values()) == {"ok"}, "one bad record is quarantine, not a degraded run"
    with engine.connect() as conn:
        for crm, deal in (("salesforce", sf_id), ("hubspot", hs_id)):
            entry = conn.execute(
                select(quarantine.c.id).where(quarantine.c.source == crm, quarantine.c.external_id == deal)
            ).scalar_one()
            row = conn.execute(select(opportunities.c.quarantine_id).where(opportunities.c.id == f"{crm}:{deal}"))
            assert row.scalar_one() == entry, f"{crm}: the last good version points at its quarantine entry"
    assert warehouse_status(engine).stale_rows == {"opportunities": 2}
    for crm in ("salesforce", "hubspot"):  # a stale deal's moves leave the per-day rollups
        assert stale_stage_rollups(engine, crm) is None

    box.store.update("deals", "salesforce", [sf_id], owner_id=owner)
    box.store.update("deals", "hubspot", [hs_id], amount=amount)
    sync_all(warehouse_url)
    with engine.connect() as conn:
        assert (
            conn.execute(
                select(func.count())
                .where(opportunities.c.id.in_([f"salesforce:{sf_id}", f"hubspot:{hs_id}"]))
                .where(opportunities.c.quarantine_id.is_not(None))
            ).scalar_one()
            == 0
        )
        left = conn.execute(select(quarantine.c.external_id).where(quarantine.c.external_id.in_([sf_id, hs_id])))
        assert left.all() == []
    assert warehouse_status(engine).stale_rows == {}
    engine.dispose()


@pytest.mark.slow
def test_deals_deleted_between_killed_and_resumed_syncs_leave_no_active_child(
    tmp_path: Path, warehouse_url: str
) -> None:
    scale = Scale("kill", reps=12, deals=6000, leads=6000)
    with Sandbox(tmp_path / "sb", scale=scale, seed=5, anchor=date(2026, 11, 20)) as box:
        base = {k: v for k, v in os.environ.items() if not k.startswith("SALESPULSE_")}
        env = {**base, **box.env(), "SALESPULSE_DATABASE__URL": warehouse_url, "SALESPULSE_SYNC__LOOKBACK_S": "0"}
        env.pop("SALESPULSE_QUOTAS__PATH")
        rng = random.Random(7)
        gone: list[str] = []
        served = box.salesforce.requests
        first = start_sync(env, "salesforce")  # the deals and their children are in the warehouse before any delete
        assert first.wait(timeout=300) == 0
        for round_ in range(4):
            proc = start_sync(env, "salesforce")
            kill_after = len(served) + rng.randint(2, 8)
            while proc.poll() is None and len(served) < kill_after:
                time.sleep(0.01)
            time.sleep(rng.uniform(0.0, 0.2))
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=60)
            summary = mutate(box.store, seed=round_, changed_fraction=0.01, added=2, deleted=4, crm="salesforce")
            gone += [f"salesforce:{d}" for d in summary.deleted["salesforce"]]
        final = start_sync(env, "salesforce")
        _, stderr = final.communicate(timeout=300)
        assert final.returncode == 0, stderr.decode()[-2000:]

        engine = open_warehouse(warehouse_url)
        with engine.connect() as conn:
            marked = conn.execute(
                select(func.count()).where(opportunities.c.id.in_(gone), opportunities.c.deleted_at.is_not(None))
            ).scalar_one()
        valid = [g for g in gone if g.split(":", 1)[1] not in box.truth.invalid_ids("salesforce", "deals")]
        assert marked == len(valid)
        assert active_children(engine, gone) == {t.name: 0 for t in CHILDREN}
        assert set(actual(engine, "salesforce", "activities")) == expected(
            box.store, box.truth, "salesforce", "activities"
        )
        engine.dispose()
