"""The alert lifecycle end to end: process() -> outbox -> slack-sdk -> the sandbox Slack, counted there."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, select

from alerts.outbox import flush
from alerts.pipeline import process
from alerts.report import format_check
from alerts.silences import add_silence
from models.clock import utc_now
from models.tables import alerts, notifications
from sandbox.slack import Channel, FakeSlack
from tests.alerts.helpers import TOKEN, Clock, evaluation, finding, no_wait, rep, rule, settings_for, transport

ANA, BEN, CAI = rep("Ana Ruiz"), rep("Ben <!channel> & Co"), rep("Cai Lun", team="APAC")


@pytest.fixture(scope="module")
def server() -> Iterator[FakeSlack]:
    clock = Clock()
    with FakeSlack(token=TOKEN, clock=clock) as fake:
        fake.test_clock = clock  # type: ignore[attr-defined]
        yield fake


@pytest.fixture
def slack(server: FakeSlack) -> FakeSlack:
    server.reset()
    server.on_post = None
    server.test_clock.now = Clock().now  # type: ignore[attr-defined]
    return server


class Run:
    """check as the CLI does it: evaluate (given), process, flush; the clock is shared with the fake Slack."""

    def __init__(self, engine: Engine, fake: FakeSlack, **slack_settings: Any) -> None:
        self.engine = engine
        self.fake = fake
        self.clock: Clock = fake.test_clock  # type: ignore[attr-defined]
        self.settings = settings_for(fake, **slack_settings)
        self.slack = transport(self.settings)

    def check(self, findings: list, the_rule=None, **kw: Any):
        the_rule = the_rule or rule()
        result = process(
            [evaluation(the_rule.id, findings, self.clock())],
            {the_rule.id: the_rule},
            self.engine,
            self.settings,
            self.clock(),
            **kw,
        )
        sent = flush(self.engine, self.slack, self.clock(), no_wait())
        return result, sent


def tops(fake: FakeSlack) -> list:
    return [m for m in fake.messages() if m.thread_ts is None]


def test_first_firing_posts_once_grouped_and_a_second_check_posts_nothing(warehouse: Engine, slack: FakeSlack) -> None:
    run = Run(warehouse, slack)
    _, sent = run.check([finding(ANA), finding(BEN)])
    assert sent.sent == 1
    [message] = slack.messages()
    assert message.channel_name == "sales-alerts"
    assert "Ana Ruiz" in message.text
    assert "&lt;!channel&gt;" in message.text
    run.clock.advance(hours=1)
    _, sent = run.check([finding(ANA), finding(BEN)])
    assert sent.sent == 0
    assert len(slack.messages()) == 1
    with warehouse.connect() as conn:
        rows = conn.execute(select(alerts.c.state, alerts.c.notification_id)).all()
    assert [r.state for r in rows] == ["firing", "firing"]
    assert len({r.notification_id for r in rows}) == 1


def test_after_the_repeat_interval_one_repeat_in_the_thread(warehouse: Engine, slack: FakeSlack) -> None:
    run = Run(warehouse, slack)
    run.check([finding(ANA), finding(BEN)])
    run.clock.advance(hours=23)
    run.check([finding(ANA), finding(BEN)])
    assert len(slack.messages()) == 1
    run.clock.advance(hours=1, minutes=1)
    run.check([finding(ANA), finding(BEN)])
    [parent, reply] = slack.messages()
    assert reply.thread_ts == parent.ts
    assert "Still firing" in reply.text
    assert "Ana Ruiz" in reply.text
    run.clock.advance(hours=1)
    run.check([finding(ANA), finding(BEN)])
    assert len(slack.messages()) == 2


def test_resolution_posts_in_the_thread_and_edits_the_parent(warehouse: Engine, slack: FakeSlack) -> None:
    run = Run(warehouse, slack)
    resolving = rule(send_resolved=True)
    run.check([finding(ANA), finding(BEN)], resolving)
    run.clock.advance(hours=1)
    _, sent = run.check([finding(BEN)], resolving)
    [parent, reply] = slack.messages()
    assert reply.thread_ts == parent.ts
    assert "Resolved" in reply.text
    assert "Ana Ruiz" in reply.text
    assert parent.edited
    assert sent.updated == 1
    assert "~Ana Ruiz~ resolved" in str(parent.blocks)
    run.clock.advance(hours=1)
    run.check([], resolving)
    parent = slack.messages()[0]
    assert parent.blocks[0]["text"]["text"].startswith(":white_check_mark: Resolved")
    assert len([m for m in slack.messages() if m.thread_ts]) == 2


def test_without_send_resolved_a_resolution_is_silent(warehouse: Engine, slack: FakeSlack) -> None:
    run = Run(warehouse, slack)
    run.check([finding(ANA)])
    run.clock.advance(hours=1)
    result, _ = run.check([])
    assert [o.decision.state.state for o in result.outcomes] == ["resolved"]
    assert len(slack.messages()) == 1
    assert not slack.messages()[0].edited


def test_a_silence_suppresses_and_the_alert_is_announced_when_it_ends(warehouse: Engine, slack: FakeSlack) -> None:
    run = Run(warehouse, slack)
    add_silence(
        warehouse,
        rule_id="pace",
        subject="Ana Ruiz",
        duration=timedelta(hours=5),
        comment="on leave",
        by="ops",
        now=run.clock(),
    )
    result, _ = run.check([finding(ANA)])
    assert slack.messages() == []
    assert "silenced by #1 (ops: on leave)" in result.outcomes[0].decision.reason
    assert format_check(result, None)[1].startswith(
        "  held back: pace / Ana Ruiz: started firing; not sent: silenced by #1 (ops: on leave) until"
    )
    run.clock.advance(hours=6)
    run.check([finding(ANA)])
    assert len(slack.messages()) == 1


def test_a_mute_window_holds_on_the_weekend_in_the_company_time_zone(warehouse: Engine, slack: FakeSlack) -> None:
    run = Run(warehouse, slack, mute_windows=[{"name": "weekend", "weekdays": ["sat", "sun"]}])
    run.clock.advance(days=5)  # Saturday 09:00 UTC
    result, _ = run.check([finding(ANA)])
    assert slack.messages() == []
    assert "mute window 'weekend'" in result.outcomes[0].decision.reason
    assert result.outcomes[0].decision.state.state == "firing"
    run.clock.advance(days=2)  # Monday
    run.check([finding(ANA)])
    assert len(slack.messages()) == 1


def test_a_severity_change_notifies_at_once_in_the_thread(warehouse: Engine, slack: FakeSlack) -> None:
    run = Run(warehouse, slack)
    run.check([finding(ANA)])
    run.clock.advance(minutes=10)
    run.check([finding(ANA, severity="critical", value=0.2)])
    [parent, reply] = slack.messages()
    assert reply.thread_ts == parent.ts
    assert "Severity changed" in reply.text
    assert "severity changed from warn to critical" in str(reply.blocks)


def test_for_holds_until_enough_evaluations(warehouse: Engine, slack: FakeSlack) -> None:
    run = Run(warehouse, slack)
    slow = rule(**{"for": 3})
    for _ in range(2):
        run.check([finding(ANA)], slow)
        run.clock.advance(hours=1)
    assert slack.messages() == []
    run.check([finding(ANA)], slow)
    assert len(slack.messages()) == 1


def test_routing_team_channel_map_and_rule_channel(warehouse: Engine, slack: FakeSlack) -> None:
    run = Run(warehouse, slack, team_channels={"APAC": "#sales-ops"})
    run.check([finding(ANA), finding(CAI)])
    assert Counter(m.channel_name for m in slack.messages()) == {"sales-alerts": 1, "sales-ops": 1}
    run.check([finding(ANA)], rule("other", channel="#sales-leadership"))
    assert slack.messages()[-1].channel_name == "sales-leadership"


def test_team_alert_inhibits_its_reps_in_the_same_family(warehouse: Engine, slack: FakeSlack) -> None:
    from rules.findings import Subject

    run = Run(warehouse, slack)
    team = Subject("team", "salesforce:team-emea", "EMEA")
    run.check([finding(team, rule_id="team-pace")], rule("team-pace"))
    result, _ = run.check([finding(ANA), finding(CAI)])
    reasons = {o.subject.name: o.decision.reason for o in result.outcomes}
    assert "inhibited by the team alert of rule team-pace for EMEA" in reasons["Ana Ruiz"]
    [_, reps] = slack.messages()
    assert "Cai Lun" in reps.text
    assert "Ana Ruiz" not in reps.text


@pytest.mark.parametrize(
    ("channel", "code", "fix"),
    [
        ("#nowhere", "channel_not_found", "create it"),
        ("#general", "not_in_channel", "invite it there"),
        ("#q1-pipeline-review", "is_archived", "unarchive it"),
    ],
)
def test_permanent_errors_stop_retrying_with_a_fix(
    warehouse: Engine, slack: FakeSlack, channel: str, code: str, fix: str
) -> None:
    run = Run(warehouse, slack)
    _, sent = run.check([finding(ANA)], rule(channel=channel))
    assert sent.failed == 1
    with warehouse.connect() as conn:
        row = conn.execute(select(notifications.c.status, notifications.c.last_error)).one()
    assert row.status == "failed"
    assert code in row.last_error
    assert fix in row.last_error
    run.clock.advance(days=1)
    assert flush(warehouse, run.slack, run.clock(), no_wait()).failed == 0


def test_a_bad_token_holds_every_notification_for_the_fix(warehouse: Engine, slack: FakeSlack) -> None:
    run = Run(warehouse, slack)
    broken = Run(warehouse, slack)
    broken.slack = transport(settings_for(slack, token="xoxb-wrong"))
    process(
        [evaluation("pace", [finding(ANA)], run.clock())], {"pace": rule()}, warehouse, broken.settings, run.clock()
    )
    sent = flush(warehouse, broken.slack, run.clock(), no_wait())
    assert sent.stopped
    assert "invalid_auth" in sent.stopped
    assert "SALESPULSE_SLACK__TOKEN" in sent.stopped
    assert flush(warehouse, transport(broken.settings), run.clock(), no_wait()).sent == 1


def test_dry_run_returns_the_messages_and_changes_nothing(warehouse: Engine, slack: FakeSlack) -> None:
    run = Run(warehouse, slack)
    result, _ = run.check([finding(ANA), finding(BEN)], dry_run=True)
    assert [m.kind for m in result.messages] == ["firing"]
    assert result.messages[0].notification_id is not None
    with warehouse.connect() as conn:
        assert conn.execute(select(alerts)).all() == []
        assert conn.execute(select(notifications)).all() == []
    assert slack.messages() == []


def test_a_failed_evaluation_resolves_nothing(warehouse: Engine, slack: FakeSlack) -> None:
    from rules.findings import Evaluation

    run = Run(warehouse, slack)
    run.check([finding(ANA)])
    result = process(
        [Evaluation("pace", "quota_pace", run.clock(), error="query failed")],
        {"pace": rule()},
        warehouse,
        run.settings,
        run.clock(),
    )
    assert result.failed_rules == [("pace", "query failed")]
    assert result.outcomes == []
    with warehouse.connect() as conn:
        assert conn.execute(select(alerts.c.state)).scalar_one() == "firing"


def test_no_secret_reaches_the_outbox_or_slack(warehouse: Engine, slack: FakeSlack) -> None:
    run = Run(warehouse, slack)
    leaky = rep(f"Rep {TOKEN}")
    run.check([finding(leaky)])
    with warehouse.connect() as conn:
        payloads = conn.execute(select(notifications.c.payload)).scalars().all()
    assert TOKEN not in "".join(payloads)
    assert TOKEN not in slack.transcript()
    assert TOKEN not in str(slack.messages())


def test_one_sender_at_a_time(warehouse: Engine, slack: FakeSlack) -> None:
    from sqlalchemy import insert

    from models.tables import sync_locks

    run = Run(warehouse, slack)
    process([evaluation("pace", [finding(ANA)], run.clock())], {"pace": rule()}, warehouse, run.settings, run.clock())
    with warehouse.begin() as conn:  # a sender on another host (its pid cannot be checked) holds the outbox
        conn.execute(
            insert(sync_locks).values(
                source="slack-outbox", holder="elsewhere:4242", acquired_at=run.clock(), heartbeat_at=run.clock()
            )
        )
    busy = flush(warehouse, run.slack, run.clock(), no_wait())
    assert busy.stopped.startswith("another process is sending the outbox")
    assert slack.messages() == []
    run.clock.advance(hours=2)  # its heartbeat is older than lock_timeout_s: taken over
    assert flush(warehouse, run.slack, run.clock(), no_wait()).sent == 1


def test_status_shows_the_outbox_and_the_not_evaluated_notes(
    warehouse: Engine, slack: FakeSlack, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import os

    import service
    from rules.findings import Evaluation, Note

    run = Run(warehouse, slack)
    run.check([finding(ANA)], rule(channel="#nowhere"))
    note = Note("pace", rep("New Hire"), "no quota for the period")
    process(
        [Evaluation("pace", "quota_pace", run.clock(), (finding(ANA),), (note,))],
        {"pace": rule()},
        warehouse,
        run.settings,
        run.clock(),
    )
    for name in [n for n in os.environ if n.upper().startswith("SALESPULSE_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("SALESPULSE_DATABASE__URL", warehouse.url.render_as_string(hide_password=False))
    assert service.main(["status"]) == 0
    out = capsys.readouterr().out
    assert "outbox\n  pending 0, outcome being checked 0, sent today 0\n" in out
    assert "  FAILED #1 (firing) to #nowhere: Slack refused: channel_not_found: no channel #nowhere: create it" in out
    assert "  pace: 1 not evaluated as of 2026-05-04 09:00 UTC: New Hire: no quota for the period" in out
    assert "  after fixing the cause: python service.py alerts retry [ID ...]" in out
    assert service.main(["alerts", "retry", "1"]) == 0
    assert capsys.readouterr().out == "1 notification(s) queued again; the next check (or the daemon) sends them\n"
    slack.channels.append(Channel("C0NOWHERE", "nowhere"))  # the admin created the channel
    try:
        assert flush(warehouse, run.slack, utc_now(), no_wait()).sent == 1  # the CLI queued it by the wall clock
    finally:
        slack.channels.pop()
