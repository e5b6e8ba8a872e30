"""``check --as-of`` a week ago finds what a check at that time found on the warehouse as it was then.

The sandbox company is synced at its "now" T0 and the warehouse file copied (frozen). Then a week
passes in the sandbox CRMs — every day some deals move stage, close, change amount or close date,
new deals arrive with activities, others are deleted — and the live warehouse follows by
incremental syncs. Evaluating the default pack as of T0 on the live warehouse must name the same
subjects with the same severities as evaluating it at T0 on the frozen copy. Values are not
compared: past amounts cannot be reconstructed (the warehouse keeps no amount history).
"""

from __future__ import annotations

import os
import shutil
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select

from models.clock import FixedClock
from models.database import open_warehouse
from models.settings import CompanySettings
from models.tables import opportunities, stage_changes
from rules import stage_history
from rules.check import evaluate_rules
from rules.findings import Evaluation
from rules.loader import load_rules
from rules.model import Scope, Warehouse
from sandbox.company import SCALES, mutate
from sandbox.runner import Sandbox
from tests.sync.company_checks import stale_stage_rollups
from tests.sync.test_both_crms import sync_all

ROOT = Path(__file__).resolve().parents[2]


def verdicts(evaluations: list[Evaluation]) -> set[tuple[str, str, str]]:
    assert [e.error for e in evaluations if e.error] == []
    return {(e.rule_id, f.subject.id, f.severity) for e in evaluations for f in e.findings}


def assert_history_as_of(then: Engine, now: Engine, t0: datetime) -> None:
    """Stage moves and stays of windows ending at or before T0 read from the per-day rollups (and, on the
    live warehouse, the deals deleted since T0 added back raw) equal the raw reads of ``stage_changes``.

    Not compared with the frozen warehouse: a deal quarantined at T0 and fixed since is in the live
    warehouse's past but was in no warehouse then.
    """
    raw = Scope(exclude_reps=("nobody@example.invalid",))  # a rep scope: read from stage_changes
    windows = [(t0 - timedelta(days=365), t0), (t0 - timedelta(days=90, hours=3.5), t0 - timedelta(hours=30))]
    for engine in (then, now):
        with engine.connect() as conn:
            warehouse = Warehouse(conn, CompanySettings())
            for lo, hi in windows:
                moves = stage_history.moves(warehouse, lo, hi, t0, Scope())
                assert sum(moves.values()) > 100
                assert moves == stage_history.moves(warehouse, lo, hi, t0, raw)
                stays = stage_history.stays(warehouse, lo, hi, t0, Scope(), by_stage=True)
                assert stays == stage_history.stays(warehouse, lo, hi, t0, raw, by_stage=True)


@pytest.mark.slow
def test_as_of_a_week_ago_matches_the_warehouse_frozen_then(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pack = load_rules([ROOT / "rules.d"]).rules
    clock = FixedClock(datetime(2026, 11, 20, tzinfo=UTC))
    live, frozen = tmp_path / "live.db", tmp_path / "frozen.db"
    with Sandbox(tmp_path / "sandbox", scale=SCALES["small"], seed=4, anchor=date(2026, 11, 20), clock=clock) as box:
        t0 = datetime.fromisoformat(box.truth.generator["anchor_end"].replace("Z", "+00:00"))
        for name in [n for n in os.environ if n.upper().startswith("SALESPULSE_")]:
            monkeypatch.delenv(name)
        for name, value in box.env().items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("SALESPULSE_SYNC__LOOKBACK_S", "0")
        monkeypatch.setenv("SALESPULSE_DATABASE__URL", f"sqlite:///{live}")
        sync_all(f"sqlite:///{live}")
        shutil.copyfile(live, frozen)
        for day in range(1, 8):
            clock.moment = t0 + timedelta(days=day, hours=-10)
            mutate(box.store, seed=40 + day, changed_fraction=0.03, added=4, deleted=2)
            sync_all(f"sqlite:///{live}")

    then = open_warehouse(f"sqlite:///{frozen}")
    now = open_warehouse(f"sqlite:///{live}")
    with now.connect() as conn:  # the week really happened in the live warehouse
        assert conn.execute(select(func.count()).where(stage_changes.c.changed_at > t0)).scalar_one() > 20
        assert conn.execute(select(func.count()).where(opportunities.c.deleted_at > t0)).scalar_one() >= 20
        assert conn.execute(select(func.count()).where(opportunities.c.created_at > t0)).scalar_one() >= 40
    for crm in ("salesforce", "hubspot"):  # a week of incremental syncs kept the per-day rollups exact
        assert stale_stage_rollups(now, crm) is None
    assert_history_as_of(then, now, t0)
    company = CompanySettings()
    at_the_time = verdicts(evaluate_rules(pack, then, company, t0))
    assert at_the_time  # the planted problems are there to be found
    assert verdicts(evaluate_rules(pack, now, company, t0)) == at_the_time
    then.dispose()
    now.dispose()
