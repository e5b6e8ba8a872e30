"""`service.py sync` and `status` as an operator runs them, against the sandbox."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import date
from pathlib import Path

from sandbox.company import SCALES
from sandbox.runner import Sandbox

ROOT = Path(__file__).resolve().parents[2]


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "service.py"), *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_sync_then_status_shows_runs_cursors_and_quarantine(tmp_path: Path) -> None:
    with Sandbox(tmp_path / "sb", scale=SCALES["small"], seed=3, anchor=date(2026, 11, 20)) as box:
        base = {k: v for k, v in os.environ.items() if not k.startswith("SALESPULSE_")}
        env = {**base, **box.env(), "SALESPULSE_DATABASE__URL": f"sqlite:///{tmp_path}/w.db"}
        synced = run(env, "sync")
        assert synced.returncode == 0, synced.stderr[-2000:]
        assert "source=hubspot stream=calls status=ok" in synced.stderr
        status = run(env, "status")
    assert status.returncode == 0
    invalid = len(box.truth.invalid_ids("salesforce", "deals"))
    lines = status.stdout.splitlines()
    opp = next(line for line in lines if line.strip().startswith("salesforce/opportunities"))
    assert " ok" in opp
    assert f"quarantined {invalid}" in opp
    assert any(line.strip().startswith("cursor {") for line in lines)
    quotas = next(line for line in lines if line.strip().startswith("quotas "))
    assert int(quotas.split()[-1].replace(",", "")) > 0  # CRM quotas and the quota file
    for secret in box.tokens.values():
        assert secret not in synced.stdout + synced.stderr + status.stdout


def test_sync_with_an_unreachable_crm_exits_1_with_the_reason(tmp_path: Path) -> None:
    base = {k: v for k, v in os.environ.items() if not k.startswith("SALESPULSE_")}
    env = {
        **base,
        "SALESPULSE_DATABASE__URL": f"sqlite:///{tmp_path}/w.db",
        "SALESPULSE_HUBSPOT__ENABLED": "true",
        "SALESPULSE_HUBSPOT__BASE_URL": "http://127.0.0.1:9",
        "SALESPULSE_HUBSPOT__ACCESS_TOKEN": "pat-UNREACHABLE-secret",
        "SALESPULSE_SYNC__MAX_RETRIES": "1",
        "SALESPULSE_SYNC__BACKOFF_BASE_S": "0.01",
    }
    result = run(env, "sync")
    assert result.returncode == 1
    assert "stream(s) did not complete" in result.stderr
    assert "hubspot/reps" in result.stderr
    assert "pat-UNREACHABLE-secret" not in result.stdout + result.stderr


def test_one_crm_refusing_us_does_not_stop_the_other(tmp_path: Path) -> None:
    with Sandbox(tmp_path / "sb", scale=SCALES["small"], seed=3, anchor=date(2026, 11, 20)) as box:
        base = {k: v for k, v in os.environ.items() if not k.startswith("SALESPULSE_")}
        env = {
            **base,
            **box.env(),
            "SALESPULSE_DATABASE__URL": f"sqlite:///{tmp_path}/w.db",
            "SALESPULSE_SALESFORCE__SESSION_ID": "00D-revoked-session",
        }
        synced = run(env, "sync")
        status = run(env, "status")
    assert synced.returncode == 1
    assert "salesforce" in synced.stderr
    assert "session expired or invalid" in synced.stderr.lower()
    assert "00D-revoked-session" not in synced.stderr
    assert "hubspot/opportunities" in status.stdout
    assert "salesforce/opportunities" not in status.stdout
