"""The command line as a user meets it: a real process, its output and exit code."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from models.database import head_revision, open_warehouse
from models.tables import daemon_instances, daemon_leases, notifications, rule_notes

ROOT = Path(__file__).resolve().parents[2]
COMMANDS = ["demo", "sync", "check", "run", "sandbox", "status", "rules", "alerts", "silence", "quotas"]


def run(*args: str, env: dict[str, str] | None = None, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.upper().startswith("SALESPULSE_")}
    return subprocess.run(
        [sys.executable, str(ROOT / "service.py"), *args],
        capture_output=True,
        text=True,
        env={**clean, **(env or {})},
        cwd=cwd,
        timeout=60,
        check=False,
    )


def test_help_lists_every_command() -> None:
    result = run("--help")
    assert result.returncode == 0
    for command in COMMANDS:
        assert f"    {command} " in result.stdout


def test_status_on_a_new_database_shows_schema_and_zero_counts(warehouse_url: str) -> None:
    result = run("status", env={"SALESPULSE_DATABASE__URL": warehouse_url})
    assert result.returncode == 0, result.stderr
    assert f"schema version  {head_revision()} (up to date)" in result.stdout
    rows = [line.split() for line in result.stdout.splitlines() if line.startswith("  ") and line.strip()]
    counts = [row for row in rows if row[-1] == "0"]
    assert {c[0] for c in counts} >= {"opportunities", "reps", "leads", "activities", "quarantine", "alerts"}
    assert "(no sync has run yet)" in result.stdout


def test_status_does_not_claim_rules_it_cannot_load(warehouse_url: str, tmp_path: Path) -> None:
    present = tmp_path / "present.yaml"
    present.write_text("rules: []\n")
    env = {"SALESPULSE_DATABASE__URL": warehouse_url, "SALESPULSE_RULES__PATHS": f"{present},{tmp_path}/absent.yaml"}
    table = run("status", env=env)
    as_json = run("status", "--json", env=env)
    assert table.returncode == as_json.returncode == 0, table.stderr + as_json.stderr
    assert f"rules: 1 file(s) found: {present}" in table.stdout
    assert f"not found (no rules are loaded from them; see [rules] paths): {tmp_path}/absent.yaml" in table.stdout
    doc = json.loads(as_json.stdout)
    assert doc["rules"] == [
        {"path": str(present), "exists": True},
        {"path": f"{tmp_path}/absent.yaml", "exists": False},
    ]
    assert doc["schema_version"] == doc["head_version"] == head_revision()
    assert doc["streams"] == []
    assert set(doc["row_counts"]) >= {"opportunities", "reps", "quotas", "sync_runs"}


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        (["status"], {"SALESPULSE_SYNC__BATCH_SIZE": "lots"}, "environment variable SALESPULSE_SYNC__BATCH_SIZE"),
        (["--config", "/nonexistent/s.toml", "status"], {}, "/nonexistent/s.toml: settings file not found"),
        (["frobnicate"], {}, "invalid choice: 'frobnicate'"),
        (["sync", "--source", "pipedrive"], {}, "invalid choice: 'pipedrive'"),
        (["quotas", "check"], {}, "no quota file given"),
    ],
)
def test_bad_usage_or_configuration_exits_2(
    args: list[str], env: dict[str, str], expected: str, tmp_path: Path
) -> None:
    env = {"SALESPULSE_DATABASE__URL": f"sqlite:///{tmp_path}/w.db", **env}
    result = run(*args, env=env)
    assert result.returncode == 2
    assert expected in result.stderr


def test_bad_quota_line_exits_2_naming_the_line(tmp_path: Path) -> None:
    quota_file = tmp_path / "q.csv"
    quota_file.write_text(
        "rep_email,period_start,period_end,amount,currency\nghost@example.com,2026-01-01,2026-03-31,5,USD\n"
    )
    result = run("quotas", "check", str(quota_file), env={"SALESPULSE_DATABASE__URL": f"sqlite:///{tmp_path}/w.db"})
    assert result.returncode == 2
    assert f"{quota_file}:2: unknown rep 'ghost@example.com'" in result.stderr


def test_no_secret_appears_in_anything_printed(tmp_path: Path) -> None:
    secrets = {
        "SALESPULSE_SLACK__TOKEN": "xoxb-LEAKCANARY-slack",
        "SALESPULSE_HUBSPOT__ACCESS_TOKEN": "pat-LEAKCANARY-hubspot",
        "SALESPULSE_SALESFORCE__SESSION_ID": "00D-LEAKCANARY-session",
        "SALESPULSE_SALESFORCE__PASSWORD": "LEAKCANARY-password",
    }
    db = {"SALESPULSE_DATABASE__URL": f"sqlite:///{tmp_path}/w.db", "SALESPULSE_LOG__LEVEL": "DEBUG"}
    bad_file = tmp_path / "bad.toml"
    bad_file.write_text('[slack]\ntoken = "xoxb-LEAKCANARY-file"\n')
    runs = [
        run("status", env={**secrets, **db}),
        run("check", env={**secrets, **db}),
        run("status", env={**secrets, **db, "SALESPULSE_SLACK__TIMEOUT_S": "-1"}),
        run("--config", str(bad_file), "status", env={**secrets, **db}),
        run(
            "status", env={**secrets, "SALESPULSE_DATABASE__URL": "postgresql+psycopg://u:LEAKCANARY-db@127.0.0.1:1/x"}
        ),
    ]
    assert [r.returncode for r in runs] == [0, 0, 2, 2, 1]
    assert "cannot open the warehouse postgresql+psycopg://u:***@127.0.0.1:1/x" in runs[-1].stderr
    for result in runs:
        assert "LEAKCANARY" not in result.stdout + result.stderr


MALFORMED_DATABASE_URLS = [
    "postgresql+psycopg://u:LEAKCANARY@127.0.0.1:notaport/x",  # port not a number
    "postgresql+psycopg://u:LEAK@CANARY@127.0.0.1:x/x",  # an '@' inside the password
    "u:LEAKCANARY@127.0.0.1/x",  # no scheme
    "mysql://u:LEAKCANARY@127.0.0.1/x",  # a driver that is not installed
    "postgresql+psycopq://u:LEAKCANARY@127.0.0.1/x",  # a typo in the driver
]
SECRET_VARIABLES = [
    "SALESPULSE_SALESFORCE__SESSION_ID",
    "SALESPULSE_SALESFORCE__PASSWORD",
    "SALESPULSE_SALESFORCE__SECURITY_TOKEN",
    "SALESPULSE_SALESFORCE__PRIVATE_KEY",
    "SALESPULSE_HUBSPOT__ACCESS_TOKEN",
    "SALESPULSE_SLACK__TOKEN",
]


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [("SALESPULSE_DATABASE__URL", url, "database.url: ") for url in MALFORMED_DATABASE_URLS]
    + [(name, "LEAKCANARY-value\x07", "control character") for name in SECRET_VARIABLES]
    + [(name, " LEAKCANARY-value ", "whitespace") for name in SECRET_VARIABLES if not name.endswith("PRIVATE_KEY")]
    + [(f"{name}__NESTED", "LEAKCANARY-value", "valid string") for name in SECRET_VARIABLES],
)
def test_malformed_secret_settings_exit_2_in_one_line_without_the_secret(name: str, value: str, expected: str) -> None:
    result = run("status", env={name: value})
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("configuration error: environment variable ")
    assert expected in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1  # no traceback
    assert "LEAK" not in result.stdout + result.stderr
    assert "CANARY" not in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("mysql://user@127.0.0.1/x", "the Python driver for 'mysql' is not installed"),
        ("postgresql+psycopq://user@127.0.0.1/x", "unknown database driver 'postgresql+psycopq'"),
        ("nosuchdb:///x.db", "unknown database driver 'nosuchdb'"),
    ],
)
def test_unknown_or_missing_database_driver_is_a_configuration_error(url: str, reason: str) -> None:
    result = run("status", env={"SALESPULSE_DATABASE__URL": url})
    assert result.returncode == 2
    assert reason in result.stderr
    assert "postgresql+psycopg://user@host:5432/salespulse" in result.stderr  # how to fix
    assert "Traceback" not in result.stderr


def test_status_json_carries_the_alerting_and_daemon_sections_the_table_prints(warehouse_url: str) -> None:
    at = datetime(2026, 5, 4, 9, 30, tzinfo=UTC)
    state = {
        "files": {"rules": {"problems": [], "summary": "12 rules", "loaded_at": "2026-05-04T09:00:00+00:00"}},
        "jobs": {"sync": {"last_run_at": "2026-05-04T09:15:00+00:00", "status": "ok"}},
    }
    with open_warehouse(warehouse_url).begin() as conn:
        conn.execute(rule_notes.insert(), [{"rule_id": "quota", "subject": "Ana", "reason": "no quota", "as_of": at}])
        conn.execute(
            daemon_instances.insert(),
            [{"holder": "host:42", "started_at": at, "seen_at": at, "role": "leader", "state": json.dumps(state)}],
        )
        conn.execute(
            daemon_leases.insert(),
            [{"name": "scheduler", "holder": "host:42", "acquired_at": at, "renewed_at": at, "expires_at": at}],
        )
        conn.execute(
            notifications.insert(),
            [{"kind": "firing", "channel": "#sales", "payload": "{}", "status": "failed", "attempts": 3,
              "next_attempt_at": at, "created_at": at, "last_error": "channel_not_found"}],
        )  # fmt: skip
    env = {"SALESPULSE_DATABASE__URL": warehouse_url}
    table, as_json = run("status", env=env), run("status", "--json", env=env)
    assert table.returncode == as_json.returncode == 0, table.stderr + as_json.stderr
    doc = json.loads(as_json.stdout)
    assert doc["alerting"] == {
        "outbox": {
            "pending": 0,
            "outcome_being_checked": 0,
            "sent_today": 0,
            "waiting": [],
            "failed": [{"id": 1, "channel": "#sales", "kind": "firing", "reason": "channel_not_found"}],
        },
        "not_evaluated": [{"rule_id": "quota", "count": 1, "as_of": at.isoformat(), "first": ["Ana: no quota"]}],
    }
    assert doc["daemons"] == {
        "leader": {"holder": "host:42", "expires_at": at.isoformat()},
        "instances": [
            {"holder": "host:42", "role": "leader", "started_at": at.isoformat(), "seen_at": at.isoformat(), **state}
        ],
    }
    # The table form prints the same facts.
    for text in (
        "FAILED #1 (firing) to #sales: channel_not_found",
        "quota: 1 not evaluated as of 2026-05-04 09:30",
        "leader lease: host:42",
        "rules: 12 rules (loaded 2026-05-04T09:00:00+00:00)",
        "sync ",
    ):
        assert text in table.stdout  # fmt: skip
