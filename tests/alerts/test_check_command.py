"""`check` as a user runs it (service.main) against the sandbox Slack: delivers, exit codes.

Uses the engine's toy kind ``open_deals`` (a rep with three open deals fires) on a warehouse
written with the rule-test data format, so the command is tested without a whole CRM sync.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine

import service
from models.settings import CompanySettings
from rules.kinds import KINDS
from rules.testdata import DataIn, write_data
from sandbox.slack import FakeSlack
from tests.alerts.helpers import TOKEN
from tests.rules.toy_kinds import TOY_KINDS

AT = "2026-03-16T09:00:00Z"
RULES = "rules:\n  - id: too-many-open\n    kind: open_deals\n    severity: {warn: 2, critical: 3}\n"


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    with FakeSlack(token=TOKEN) as fake:
        yield fake


@pytest.fixture
def env(tmp_path: Path, warehouse: Engine, slack: FakeSlack, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name, kind in TOY_KINDS.items():
        monkeypatch.setitem(KINDS, name, kind)
    with warehouse.begin() as conn:
        data = {
            "reps": [{"name": "Ana <!channel> Lima", "team": "West"}],
            "deals": [
                {"name": "A", "owner": "Ana <!channel> Lima", "amount": 10, "path": [["Prospecting", -30]], "count": 3}
            ],
        }
        write_data(conn, DataIn.model_validate(data), datetime(2026, 3, 16, 9, tzinfo=UTC), CompanySettings())
    rules = tmp_path / "rules.d" / "toy.yaml"
    rules.parent.mkdir()
    rules.write_text(RULES, encoding="utf-8")
    for name in [n for n in os.environ if n.upper().startswith("SALESPULSE_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("SALESPULSE_DATABASE__URL", warehouse.url.render_as_string(hide_password=False))
    monkeypatch.setenv("SALESPULSE_RULES__PATHS", str(rules.parent))
    monkeypatch.setenv("SALESPULSE_SLACK__BASE_URL", slack.base_url + "/api/")
    monkeypatch.setenv("SALESPULSE_SLACK__TOKEN", TOKEN)
    monkeypatch.setenv("SALESPULSE_SLACK__POST_INTERVAL_S", "0")
    return rules


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = service.main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.usefixtures("env")
def test_check_delivers_once_and_dry_run_shows_without_sending(slack: FakeSlack, capsys) -> None:
    code, out, err = run(capsys, "check", "--dry-run", "--as-of", AT)
    assert (code, err) == (0, "")
    assert "#sales-alerts" in out
    assert "Ana <!channel> Lima" in out  # the terminal shows the name as Slack would, unescaped and inert
    assert slack.messages() == []
    code, out, err = run(capsys, "check", "--as-of", AT)
    assert (code, err) == (0, "")
    assert "slack: sent 1, edited 0, found already posted 0, failed 0, waiting 0" in out
    [message] = slack.messages()
    assert "*Ana &lt;!channel&gt; Lima*" in str(message.blocks)
    code, out, _ = run(capsys, "check", "--as-of", AT)
    assert code == 0
    assert "slack: sent 0" in out
    assert len(slack.messages()) == 1


def test_check_exits_1_when_slack_refuses_for_good(env: Path, capsys) -> None:
    env.write_text(RULES + "    channel: '#q1-pipeline-review'\n", encoding="utf-8")
    code, out, err = run(capsys, "check", "--as-of", AT)
    assert code == 1
    assert "slack: notification 1 to #q1-pipeline-review: Slack refused: is_archived: " in out
    assert "level=ERROR logger=alerts.outbox notification 1 to #q1-pipeline-review: Slack refused: is_archived" in err
    assert err.endswith(
        "error: alerts queued but not all delivered: 1 notification(s) refused by Slack; see 'status'\n"
    )


@pytest.mark.usefixtures("env")
def test_check_exits_1_in_an_outage_and_the_next_check_delivers(
    slack: FakeSlack, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SALESPULSE_SLACK__RETRY_BASE_S", "0.01")
    monkeypatch.setenv("SALESPULSE_SLACK__TIMEOUT_S", "0.2")  # a post stays in flight 3 x 0.2 + 10 s
    slack.faults.arm("server_error", path="chat.postMessage", status=503)
    code, _, err = run(capsys, "check", "--as-of", AT)
    assert code == 1
    assert err.endswith("error: alerts queued but not all delivered: Slack answered HTTP 503\n")
    assert slack.messages() == []
    time.sleep(10.7)  # a 503 may have posted: the outbox looks again only once that post can no longer land
    code, out, _ = run(capsys, "check", "--as-of", "2026-03-16T10:00:00Z")
    assert code == 0
    assert "slack: sent 1" in out
    assert len(slack.messages()) == 1
