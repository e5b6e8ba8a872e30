"""`service.py sync` and `status` as an operator runs them, against the sandbox."""

from __future__ import annotations

import csv
import json
import os
import sqlite3
import subprocess
import sys
from datetime import date
from decimal import Decimal
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
        table = run(env, "status")
        as_json = run(env, "status", "--json")
        quota_lines = list(csv.DictReader(box.quota_file.open(newline="")))
    assert table.returncode == as_json.returncode == 0
    doc = json.loads(as_json.stdout)
    streams = {f"{s['source']}/{s['stream']}": s for s in doc["streams"]}
    opp = streams["salesforce/opportunities"]
    assert opp["status"] == "ok"
    assert opp["quarantined"] == len(box.truth.invalid_ids("salesforce", "deals"))
    deals = box.truth.counts["salesforce"]["deals"]
    assert opp["rows"] == deals["rows"] - deals["deleted"] - opp["quarantined"]
    assert opp["cursor_stamp"] is not None
    assert opp["ids_at_stamp"] >= 1
    assert 0 <= opp["age_s"] < 600
    # The table reads at a glance: one line per stream with its status and counts, no raw cursor JSON.
    line = next(x for x in table.stdout.splitlines() if x.strip().startswith("salesforce/opportunities"))
    assert line.split()[4:7] == ["ok", f"{opp['rows']:,}", f"{opp['quarantined']:,}"]
    assert '"ids"' not in table.stdout
    # Every line of the quota file landed as a file quota (not only CRM quotas).
    with sqlite3.connect(tmp_path / "w.db") as db:
        stored = set(
            db.execute(
                "SELECT r.email, q.period_start, q.period_end, q.amount FROM quotas q JOIN reps r ON r.id = q.rep_id"
                " WHERE q.source = 'file'"
            )
        )
    cents = Decimal("0.01")
    assert {(e, s, f, Decimal(str(a)).quantize(cents)) for e, s, f, a in stored} == {
        (q["rep_email"].lower(), q["period_start"], q["period_end"], Decimal(q["amount"]).quantize(cents))
        for q in quota_lines
    }
    for secret in box.tokens.values():
        assert secret not in synced.stdout + synced.stderr + table.stdout + as_json.stdout


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
