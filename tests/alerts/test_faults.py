"""Slack failing for a while (429, 500, timeouts) and then recovering: every notification exactly once."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, select

from alerts.outbox import FlushResult, flush
from alerts.pipeline import process
from models.tables import notifications
from sandbox.slack import FakeSlack
from tests.alerts.helpers import TOKEN, Clock, evaluation, finding, no_wait, rep, rule, settings_for, transport

RULES = [rule(f"rule-{i}", send_resolved=True) for i in range(4)]


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    clock = Clock()
    with FakeSlack(token=TOKEN, clock=clock) as fake:
        fake.test_clock = clock  # type: ignore[attr-defined]
        yield fake


def posted_ids(fake: FakeSlack) -> Counter[str]:
    return Counter(
        m.metadata["event_payload"]["id"] for m in fake.messages() if m.metadata and m.metadata.get("event_payload")
    )


def queue(engine: Engine, fake: FakeSlack, settings, names: list[str]) -> None:
    clock: Clock = fake.test_clock  # type: ignore[attr-defined]
    evaluations = [evaluation(r.id, [finding(rep(n), rule_id=r.id) for n in names], clock()) for r in RULES]
    process(evaluations, {r.id: r for r in RULES}, engine, settings, clock())


def drain(engine: Engine, fake: FakeSlack, settings, rounds: int = 40) -> list[FlushResult]:
    """Flush until nothing is due, two hours apart (beyond any back-off); every run's result."""
    clock: Clock = fake.test_clock  # type: ignore[attr-defined]
    slack = transport(settings)
    results = []
    for _ in range(rounds):
        result = flush(engine, slack, clock(), no_wait())
        results.append(result)
        if result.stopped and "no answer" in result.stopped:
            time.sleep(0.6)  # the timed-out request may still run in the server; real retries wait 30 s or more
        with engine.connect() as conn:
            left = conn.execute(select(notifications.c.id).where(notifications.c.status.in_(("pending", "sending"))))
            if not left.all():
                return results
        clock.advance(hours=2)
    pytest.fail(f"outbox not drained after {rounds} rounds: {[r.stopped for r in results]}")


@pytest.mark.parametrize(
    ("fault", "times", "stopped", "posted_unseen"),
    [
        # 429 beyond the SDK's two retries: Slack did not post, so no history lookup is needed
        ({"kind": "rate_limit", "retry_after": 1}, 4, "rate limit", False),
        ({"kind": "server_error", "status": 500}, 4, "HTTP 500", False),
        ({"kind": "server_error", "status": 503}, 3, "HTTP 503", False),
        # the server posts after the client gave up: the next run finds it by its metadata
        ({"kind": "timeout", "delay": 1.5}, 2, "no answer from Slack", True),
        ({"kind": "drop"}, 3, "no answer from Slack", False),
    ],
)
def test_after_an_outage_every_notification_is_delivered_exactly_once(
    warehouse: Engine, slack: FakeSlack, fault: dict, times: int, stopped: str, posted_unseen: bool
) -> None:
    settings = settings_for(slack, timeout_s=1)
    queue(warehouse, slack, settings, ["Ana Ruiz", "Ben Ode"])
    slack.faults.arm(path="chat.postMessage", times=times, skip=1, **fault)
    results = drain(warehouse, slack, settings)
    assert stopped in results[0].stopped
    assert (sum(r.found_posted for r in results) > 0) == posted_unseen
    # follow-ups too: resolutions into the threads, edits of the parents
    slack.test_clock.advance(hours=1)  # type: ignore[attr-defined]
    clock = slack.test_clock  # type: ignore[attr-defined]
    process([evaluation(r.id, [], clock()) for r in RULES], {r.id: r for r in RULES}, warehouse, settings, clock())
    slack.faults.arm(path="chat.postMessage", times=times, **fault)
    drain(warehouse, slack, settings)
    with warehouse.connect() as conn:
        rows = conn.execute(select(notifications.c.id, notifications.c.kind, notifications.c.status)).all()
    assert {r.status for r in rows} == {"sent"}
    posts = [str(r.id) for r in rows if r.kind != "update"]
    assert posted_ids(slack) == Counter(posts)  # each exactly once, none lost
    parents = [m for m in slack.messages() if m.thread_ts is None]
    assert len(parents) == len(RULES)
    assert all(m.edited for m in parents)
    assert len([m for m in slack.messages() if m.thread_ts]) == len(RULES)
