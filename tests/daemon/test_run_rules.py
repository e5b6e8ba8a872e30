"""`run` with rules: checks at second-level schedules deliver alerts to the sandbox Slack; rule-file
edits take effect without a restart, a broken edit is refused and the old rules keep running."""

from __future__ import annotations

from pathlib import Path

import pytest

from sandbox.company import SCALES
from sandbox.runner import Sandbox
from tests.daemon.daemon_process import DaemonProcess, clean_env, run_command, wait_for

NO_ACTIVITY = """\
rules:
  - id: deal-no-activity
    kind: deal_no_activity
    schedule: "*/2 * * * * *"
    channel: "#sales-alerts"
    params: {days: 21}
    severity: {warn: 1, critical: 5}
"""
SLIPPED = """\
  - id: close-date-slipped
    kind: close_date_slipped
    schedule: "*/2 * * * * *"
    channel: "#sales-ops"
    params: {min_pushes: 3}
    severity: {warn: 1, critical: 5}
"""
BROKEN = """\
  - id: typo
    kind: deal_no_activty
    schedule: "*/2 * * * * *"
"""


def job_lines(daemon: DaemonProcess, job: str, after: int = 0) -> list[dict]:
    return [line for line in daemon.lines()[after:] if line.get("event") == "job" and line.get("job") == job]


@pytest.mark.slow
def test_checks_alert_and_rule_edits_apply_or_are_refused(tmp_path: Path) -> None:
    with Sandbox(tmp_path / "sb", scale=SCALES["small"], seed=2) as box:
        rules = tmp_path / "rules.yaml"
        rules.write_text(NO_ACTIVITY)
        env = clean_env(
            box.env(),
            SALESPULSE_DATABASE__URL=f"sqlite:///{tmp_path}/w.db",
            SALESPULSE_RULES__PATHS=str(rules),
            SALESPULSE_SYNC__INTERVAL_MINUTES="0.1",
            SALESPULSE_SERVICE__RELOAD_POLL_S="0.5",
            SALESPULSE_SERVICE__OUTBOX_INTERVAL_S="1",
            SALESPULSE_SERVICE__STOP_TIMEOUT_S="10",
            SALESPULSE_SLACK__POST_INTERVAL_S="0",
        )
        daemon = DaemonProcess(env, tmp_path / "daemon.log")
        try:
            ran = wait_for(
                "a check with findings",
                lambda: [j for j in job_lines(daemon, "check:deal-no-activity") if j.get("findings")],
                90,
            )
            assert ran[0]["status"] == "ok"
            wait_for("alerts in #sales-alerts", lambda: box.slack.messages("sales-alerts"), 30)
            assert "deal-no-activity" in box.slack.transcript("sales-alerts")

            # An edit that adds a rule: its alerts arrive in its channel, no restart.
            rules.write_text(NO_ACTIVITY + SLIPPED)
            wait_for("the reload", lambda: "rule files reloaded: 2 rule(s)" in daemon.log_text(), 20)
            wait_for("alerts in #sales-ops", lambda: box.slack.messages("sales-ops"), 60)
            assert "close-date-slipped" in box.slack.transcript("sales-ops")

            # A broken edit is refused with file:line:column, and the two rules keep running.
            rules.write_text(NO_ACTIVITY + SLIPPED + BROKEN)
            refusal = wait_for(
                "the refusal",
                lambda: [
                    line
                    for line in daemon.lines()
                    if line.get("event") == "reload_refused" and line.get("files") == "rule files"
                ],
                20,
            )
            assert f"{rules}:" in refusal[0]["msg"]
            assert "deal_no_activty" in refusal[0]["msg"]
            mark = len(daemon.lines())
            wait_for(
                "both old rules still checking",
                lambda: (
                    job_lines(daemon, "check:deal-no-activity", mark)
                    and job_lines(daemon, "check:close-date-slipped", mark)
                ),
                30,
            )
            assert not job_lines(daemon, "check:typo")
            status = wait_for(
                "status to show the refusal",
                lambda: (
                    (s := run_command(env, "status")).returncode == 0
                    and "rule files: newest change REFUSED" in s.stdout
                    and s
                ),
                20,
            )
            assert f"{rules}:" in status.stdout
            assert "running the version loaded at" in status.stdout

            code, _took = daemon.terminate(timeout=25)
            assert code == 0
            # Each notification reached Slack once, though its rule was checked every two seconds.
            posted = [m for channel in ("sales-alerts", "sales-ops") for m in box.slack.messages(channel)]
            ids = [m.metadata["event_payload"]["id"] for m in posted]
            assert len(ids) == len(set(ids))
        finally:
            daemon.kill()
