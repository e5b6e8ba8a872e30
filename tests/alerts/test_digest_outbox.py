"""The digest goes through the outbox: killed mid-digest, or met by a Slack outage, it is posted once,
with one chart in its thread.

The sender is killed (SIGKILL) when Slack has stored the digest message, or shared its chart,
but before Slack's answer leaves: the model is the alerts' SIGKILL test in test_kill.py.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, select

from alerts.digest import Digest, plan_digests, queue_digests
from alerts.outbox import Pacing, flush
from models.clock import utc_now
from models.settings import SlackSettings
from models.tables import notifications
from sandbox.slack import FakeSlack
from tests.alerts.helpers import TOKEN, settings_for, transport
from tests.alerts.test_digest import ALERTS, STANDING
from tests.alerts.test_kill import kill_at_post, sender

CHANNELS = {"APAC": "#sales-ops"}  # APAC's digest to #sales-ops, EMEA's to the default channel


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    with FakeSlack(token=TOKEN) as fake:
        yield fake


@pytest.fixture(scope="module")
def digests() -> list[Digest]:
    """Planned (charts drawn) once: matplotlib is most of a test's time otherwise."""
    return plan_digests(STANDING, ALERTS, SlackSettings(team_channels=CHANNELS))


def queue(warehouse: Engine, digests: list[Digest], period: str | None = "2026-12-07T08:00:00+00:00") -> list[int]:
    return queue_digests(warehouse, digests, utc_now(), period=period)


def assert_each_digest_once_with_one_chart(warehouse: Engine, slack: FakeSlack, digest_ids: list[int]) -> None:
    with warehouse.connect() as conn:
        rows = conn.execute(select(notifications.c.kind, notifications.c.status)).all()
    assert Counter(rows) == Counter({("digest", "sent"): 2, ("chart", "sent"): 2})
    messages = slack.messages()
    digests = [m for m in messages if m.metadata]
    assert sorted(m.metadata["event_payload"]["id"] for m in digests) == sorted(map(str, digest_ids))
    charts = Counter(m.thread_ts for m in messages if m.files)
    assert charts == Counter({m.ts: 1 for m in digests})
    assert len(messages) == 4


@pytest.mark.parametrize("nth", [1, 2], ids=["the digest", "its chart"])
def test_sigkill_after_slack_stored_it_posts_each_digest_and_chart_once(
    warehouse: Engine, warehouse_url: str, slack: FakeSlack, digests: list[Digest], nth: int
) -> None:
    ids = queue(warehouse, digests)
    proc = sender(warehouse_url, slack)
    kill_at_post(slack, proc, nth)
    proc.wait(timeout=60)
    slack.on_post = None
    assert len(slack.messages()) == nth  # killed after Slack had stored the nth post, before its answer
    assert sender(warehouse_url, slack).wait(timeout=120) == 0
    assert_each_digest_once_with_one_chart(warehouse, slack, ids)


@pytest.mark.parametrize(
    ("path", "kind", "options"),
    [
        ("chat.postMessage", "server_error", {"status": 500}),
        ("chat.postMessage", "server_error", {"status": 503}),
        ("chat.postMessage", "rate_limit", {"retry_after": 1, "times": 3}),
        ("files.completeUploadExternal", "server_error", {"status": 500}),
        ("files.getUploadURLExternal", "rate_limit", {"retry_after": 1, "times": 3}),
        ("chat.postMessage", "drop", {}),
    ],
)
def test_slack_errors_during_the_digest_are_retried_and_post_it_once(
    warehouse: Engine, slack: FakeSlack, digests: list[Digest], path: str, kind: str, options: dict
) -> None:
    ids = queue(warehouse, digests)
    slack.faults.arm(kind, path=path, **options)
    client = transport(settings_for(slack, team_channels=CHANNELS))
    pacing = Pacing(post_interval_s=0, retry_base_s=0, in_flight_s=0)
    results = [flush(warehouse, client, utc_now(), pacing) for _ in range(4)]
    assert results[0].stopped is not None  # the fault met the first run
    assert results[-1].stopped is None
    assert_each_digest_once_with_one_chart(warehouse, slack, ids)


def test_a_period_is_queued_once_per_channel(warehouse: Engine, digests: list[Digest]) -> None:
    assert len(queue(warehouse, digests)) == 2
    assert queue(warehouse, digests) == []  # a re-run or a second leader for the same scheduled time
    assert len(queue(warehouse, digests, period="2026-12-14T08:00:00+00:00")) == 2
    assert len(queue(warehouse, digests, period=None)) == 2  # a hand-run digest is always queued
