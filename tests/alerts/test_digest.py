"""The digest: rendered from a Standing within Slack's limits, posted per channel with its chart."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date

import pytest
from sqlalchemy import Engine

from alerts.digest import OpenAlert, chart_png, plan_digests, queue_digests, render_digest
from alerts.outbox import Pacing, flush
from models.settings import Settings
from rules.findings import Standing, StandingRow, Subject
from sandbox.slack import FakeSlack, block_errors
from tests.alerts.helpers import T0, TOKEN, settings_for, transport


def row(name: str, team: str, attainment: float | None, quota: float | None = 100_000.0) -> StandingRow:
    kind = "team" if name == team else "rep"
    return StandingRow(
        subject=Subject(kind, f"id-{name}", name, team),
        quota=quota,
        won=(attainment or 0) * (quota or 0),
        deals_won=4,
        attainment=attainment,
        pace=None if attainment is None else attainment / 0.4,
        projected=None if attainment is None else attainment * 2.3,
        coverage=2.5,
    )


STANDING = Standing(
    as_of=T0,
    period="quarter",
    period_start=date(2026, 4, 1),
    period_end=date(2026, 6, 30),
    elapsed=0.4,
    currency="USD",
    reps=(
        row("Ana Ruiz", "EMEA", 0.2),
        row("Ben <!channel>", "EMEA", 0.5),
        row("New Hire", "EMEA", None, None),
        row("Cai Lun", "APAC", 0.41),
    ),
    teams=(row("APAC", "APAC", 0.41, 300_000.0), row("EMEA", "EMEA", 0.35, 700_000.0)),
)
ALERTS = [OpenAlert("pace", "Ana Ruiz", "critical", "EMEA"), OpenAlert("stalled", "Negotiation", "warn", None)]


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    with FakeSlack(token=TOKEN) as fake:
        yield fake


def test_the_digest_shows_individual_team_and_blended_attainment() -> None:
    message = render_digest(STANDING, ALERTS, teams=["EMEA"])
    text = str(message.blocks)
    assert block_errors(message.blocks) == []
    assert "*EMEA*: 35 % of USD 700k" in text
    assert "*Ana Ruiz*: 20 % of USD 100k (4 won) · pace 50 % · projected 46 % · coverage 2.5x · blended 24 %" in text
    assert "New Hire: no quota this period" in text
    assert "&lt;!channel&gt;" in text
    assert "<!channel>" not in text
    assert "Cai Lun" not in text
    assert "`pace`: 1 (Ana Ruiz)" in text


def test_a_big_company_stays_within_slacks_limits() -> None:
    reps = tuple(row(f"Rep {i} " + "x" * 80, f"Team {i % 40}", 0.3) for i in range(500))
    teams = tuple(row(f"Team {i}", f"Team {i}", 0.3) for i in range(40))
    big = Standing(T0, "quarter", date(2026, 4, 1), date(2026, 6, 30), 0.4, "USD", reps, teams)
    message = render_digest(big, [OpenAlert("pace", f"Rep {i}", "warn", "Team 1") for i in range(300)])
    assert block_errors(message.blocks) == []
    assert "more team(s)" in str(message.blocks)


def test_the_chart_is_a_png() -> None:
    assert chart_png(STANDING).startswith(b"\x89PNG\r\n\x1a\n")


def deliver(warehouse: Engine, digests: list, settings: Settings) -> None:
    queue_digests(warehouse, digests, T0, period=None)
    result = flush(warehouse, transport(settings), T0, Pacing(post_interval_s=0))
    assert result.stopped is None


def test_one_digest_per_channel_with_its_chart_uploaded_in_its_thread(warehouse: Engine, slack: FakeSlack) -> None:
    settings = settings_for(slack, team_channels={"APAC": "#sales-ops"})
    digests = plan_digests(STANDING, ALERTS, settings.slack)
    assert {d.channel: d.teams for d in digests} == {"#sales-ops": ("APAC",), "#sales-alerts": ("EMEA",)}
    deliver(warehouse, digests, settings)
    posted = slack.messages()
    tops = [m for m in posted if m.blocks]
    assert len(tops) == 2
    uploads = [(m.thread_ts, f) for m in posted for f in m.files]
    assert sorted(ts for ts, _ in uploads) == sorted(m.ts for m in tops)
    assert all(f.content.startswith(b"\x89PNG") for _, f in uploads)


def test_no_chart_when_switched_off(warehouse: Engine, slack: FakeSlack) -> None:
    settings = settings_for(slack, digest_chart=False)
    deliver(warehouse, plan_digests(STANDING, [], settings.slack, channel="#sales-leadership"), settings)
    [message] = slack.messages()
    assert message.channel_name == "sales-leadership"
    assert not message.files
