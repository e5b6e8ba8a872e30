"""SIGKILL the sync process at random instants, restart it, and the warehouse still equals the CRM.

The sync runs as a real `python service.py sync` process against the fake Salesforce (read
through REST or Bulk API 2.0 jobs) or the fake HubSpot served from this test process, with
no lookback and with the default one; killing it mid-transaction is the crash the engine's
"page and cursor in one transaction" design exists for. Kill points are counted in
pages served, not seconds, so a faster or slower machine still kills mid-sync.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import func, select

from models.database import open_warehouse
from models.tables import opportunities, sync_locks, sync_runs
from sandbox.company import Scale
from sandbox.runner import Sandbox
from tests.sync.company_checks import differences

ROOT = Path(__file__).resolve().parents[2]
TABLES = ("opportunities", "leads", "stage_changes", "activities")


def children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except FileNotFoundError:
        return []


def alive(pid: int) -> bool:
    """Running, not a zombie waiting for its new parent to reap it."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def start_sync(env: dict[str, str], source: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, str(ROOT / "service.py"), "sync", "--source", source],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


CASES = {
    "salesforce REST, no lookback": ("salesforce", {"SALESPULSE_SYNC__LOOKBACK_S": "0"}),
    "salesforce REST, default lookback": ("salesforce", {}),
    # A threshold of 1 row: every first read of an object is a Bulk API 2.0 job, killed mid-way.
    "salesforce Bulk API, default lookback": ("salesforce", {"SALESPULSE_SALESFORCE__BULK_THRESHOLD": "1"}),
    "hubspot, default lookback": ("hubspot", {}),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES)
def test_sigkill_at_random_points_then_resume(tmp_path: Path, warehouse_url: str, case: str) -> None:
    source, settings = CASES[case]
    scale = Scale("kill", reps=12, deals=6000, leads=6000)
    with Sandbox(tmp_path / "sb", scale=scale, seed=5, anchor=date(2026, 11, 20)) as box:
        base = {k: v for k, v in os.environ.items() if not k.startswith("SALESPULSE_")}
        env = {**base, **box.env(), "SALESPULSE_DATABASE__URL": warehouse_url, **settings}
        env.pop("SALESPULSE_QUOTAS__PATH")
        rng = random.Random(42)
        kills = 0
        orphans_checked = 0
        served = getattr(box, source).requests
        for _ in range(5):
            proc = start_sync(env, source)
            kill_after = len(served) + rng.randint(2, 6)
            while proc.poll() is None and len(served) < kill_after:
                time.sleep(0.01)
            time.sleep(rng.uniform(0.0, 0.2))  # land somewhere inside that page's work
            if proc.poll() is None:
                workers = children(proc.pid)
                proc.send_signal(signal.SIGKILL)
                kills += 1
                # Stream workers die with the sync: none may go on writing behind the next run's back.
                deadline = time.monotonic() + 5
                while any(alive(w) for w in workers) and time.monotonic() < deadline:
                    time.sleep(0.05)
                assert not any(alive(w) for w in workers), "a worker outlived its killed parent"
                orphans_checked += len(workers)
            proc.wait(timeout=60)
        assert kills >= 3, "the sync finished before most kills: make the company bigger"
        assert orphans_checked >= 1, "no kill found stream workers running: the sync did not fork"
        final = start_sync(env, source)
        _, stderr = final.communicate(timeout=300)
        assert final.returncode == 0, stderr.decode()[-2000:]

        engine = open_warehouse(warehouse_url)
        for table in TABLES:
            assert differences(engine, box.store, box.truth, source, table) is None
        with engine.connect() as conn:
            assert conn.execute(select(func.count()).select_from(sync_locks)).scalar_one() == 0
            assert conn.execute(select(func.count()).where(sync_runs.c.status == "running")).scalar_one() == 0
            interrupted = conn.execute(select(func.count()).where(sync_runs.c.error.like("interrupted%"))).scalar_one()
            assert conn.execute(select(func.count()).select_from(opportunities)).scalar_one() > 2000
        assert interrupted >= 1
        engine.dispose()
