"""`service.py run` as an operator runs it: a subprocess against the sandbox, schedules in seconds."""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select

from models.tables import quotas, sync_runs
from sandbox.company import SCALES
from sandbox.runner import Sandbox
from tests.daemon.daemon_process import DaemonProcess, clean_env, free_port, http_get, run_command, wait_for

STOP_BOUND_S = 10.0


def ok_sync_jobs(daemon: DaemonProcess, source: str) -> list[dict]:
    return [
        line
        for line in daemon.lines()
        if line.get("event") == "job" and line.get("job") == f"sync:{source}" and line.get("status") == "ok"
    ]


@pytest.mark.slow
def test_run_syncs_serves_health_reloads_refuses_and_stops_in_bound(tmp_path: Path) -> None:
    with Sandbox(tmp_path / "sb", scale=SCALES["small"], seed=3, anchor=date(2026, 11, 20)) as box:
        quota_file = tmp_path / "quotas.csv"
        shutil.copy(box.quota_file, quota_file)
        port = free_port()
        db = tmp_path / "w.db"
        env = clean_env(
            box.env(),
            SALESPULSE_DATABASE__URL=f"sqlite:///{db}",
            SALESPULSE_QUOTAS__PATH=str(quota_file),
            SALESPULSE_SYNC__INTERVAL_MINUTES="0.05",  # every 3 s
            SALESPULSE_SERVICE__HTTP_PORT=str(port),
            SALESPULSE_SERVICE__LEASE_S="3",
            SALESPULSE_SERVICE__RELOAD_POLL_S="0.5",
            SALESPULSE_SERVICE__STOP_TIMEOUT_S=str(STOP_BOUND_S),
        )
        daemon = DaemonProcess(env, tmp_path / "daemon.log")
        try:
            # Syncs happen, again and again, for both sources.
            wait_for(
                "two syncs of each source",
                lambda: all(len(ok_sync_jobs(daemon, s)) >= 2 for s in ("salesforce", "hubspot")),
                90,
            )
            first = ok_sync_jobs(daemon, "salesforce")[0]
            assert first["written"] > 0
            assert first["duration_s"] > 0
            assert {"read", "written", "quarantined", "deleted", "streams"} <= set(first)

            engine = create_engine(f"sqlite:///{db}")
            with engine.connect() as conn:
                runs = conn.execute(
                    select(func.count()).select_from(sync_runs).where(sync_runs.c.status == "ok")
                ).scalar()
                quota_rows = conn.execute(
                    select(func.count()).select_from(quotas).where(quotas.c.source == "file")
                ).scalar()
            assert runs > 0
            assert quota_rows > 0  # the quota file was loaded once the reps had synced

            code, body = http_get(port, "/healthz")
            assert (code, body) == (200, "ok\n")
            code, metrics = http_get(port, "/metrics")
            assert code == 200
            assert "salespulse_leader 1.0" in metrics
            assert "process_resident_memory_bytes " in metrics
            assert 'salespulse_sync_last_success_timestamp_seconds{source="hubspot",stream="reps"}' in metrics
            assert 'salespulse_sync_rows_total{source="salesforce",stream="opportunities"}' in metrics
            assert 'salespulse_sync_duration_seconds_count{source="salesforce"}' in metrics
            assert 'salespulse_outbox_notifications{status="pending"}' in metrics

            # A broken edit of the quota file is refused with file:line; the stored quotas stay.
            with quota_file.open("a") as fh:
                fh.write("ghost@example.com,2026-01-01,2026-03-31,1000,USD\n")
            bad_line = len(quota_file.read_text().splitlines())
            refusal = wait_for(
                "the refusal in the log",
                lambda: [
                    line
                    for line in daemon.lines()
                    if line.get("event") == "reload_refused" and f"{quota_file}:{bad_line}:" in line["msg"]
                ],
                20,
            )
            assert "unknown rep 'ghost@example.com'" in refusal[0]["msg"]
            status = wait_for(
                "status to show the refusal",
                lambda: (s := run_command(env, "status")).returncode == 0 and "REFUSED" in s.stdout and s,
                20,
            )
            assert f"{quota_file}:{bad_line}:" in status.stdout
            assert "leader" in status.stdout
            with engine.connect() as conn:
                kept = conn.execute(select(func.count()).select_from(quotas).where(quotas.c.source == "file")).scalar()
            assert kept == quota_rows
            assert 'salespulse_config_refused{files="quota file"} 1.0' in http_get(port, "/metrics")[1]

            code, took = daemon.terminate(timeout=STOP_BOUND_S + 15)
            assert code == 0, daemon.log_text()[-3000:]
            assert took < STOP_BOUND_S + 3
            assert daemon.lines()[-1]["event"] == "stopped"
            for secret in box.tokens.values():
                assert secret not in daemon.log_text()
        finally:
            daemon.kill()
