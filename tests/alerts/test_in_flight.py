"""A post whose answer timed out may still land in Slack: it is not looked up (nor posted again)
before it can no longer land. Found by the daemon soak on PostgreSQL: Slack answered after the
client's 3 s timeout, the outbox looked for the message 1 s later (its back-off), did not find it
yet, posted again, and the first post then landed too: the same notification twice."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import Engine, select

from alerts.outbox import flush, pacing_for
from alerts.pipeline import process
from models.tables import notifications
from sandbox.slack import FakeSlack
from tests.alerts.helpers import T0, TOKEN, evaluation, finding, rep, rule, settings_for, transport

LANDS_AFTER_S = 2.0  # Slack takes this long; the client gives up after 1 s


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    with FakeSlack(token=TOKEN) as fake:
        yield fake


def test_a_timed_out_post_is_not_posted_again_while_it_can_still_land(warehouse: Engine, slack: FakeSlack) -> None:
    settings = settings_for(slack, timeout_s=1, retry_base_s=1)
    pacing = pacing_for(settings.slack)
    r = rule("pace")
    process([evaluation(r.id, [finding(rep("Ana"))], T0)], {r.id: r}, warehouse, settings, T0)
    slack.faults.arm("timeout", path="chat.postMessage", delay=LANDS_AFTER_S)
    first = flush(warehouse, transport(settings), T0, pacing)
    assert first.retrying == 1  # no answer: the outcome is unknown

    # The back-off (1 s) has passed, the post has not landed yet: the row must not be touched.
    again = flush(warehouse, transport(settings), T0 + timedelta(seconds=1.5), pacing)
    assert (again.sent, again.found_posted) == (0, 0)

    time.sleep(LANDS_AFTER_S + 0.5)  # now it has landed
    later = flush(warehouse, transport(settings), T0 + timedelta(seconds=pacing.in_flight_s + 1), pacing)
    assert (later.sent, later.found_posted) == (0, 1)
    with warehouse.connect() as conn:
        assert conn.execute(select(notifications.c.status)).scalars().all() == ["sent"]
    posted = Counter(m.metadata["event_payload"]["id"] for m in slack.messages() if m.metadata)
    assert list(posted.values()) == [1]
