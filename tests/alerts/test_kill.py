"""SIGKILL the sender at random points, many times, also between Slack's ok and the commit.

Counted on the sandbox Slack by each message's metadata id: every notification exactly once.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from alerts.pipeline import process
from models.clock import utc_now
from models.tables import notifications
from sandbox.slack import FakeSlack, Message
from tests.alerts.helpers import TOKEN, evaluation, finding, rep, rule, settings_for

ROOT = Path(__file__).resolve().parents[2]
RULES = [rule(f"rule-{i:02d}", send_resolved=True) for i in range(12)]
KILLS = 6
# in_flight_s=0: the next sender starts half a second or more after a kill, when the fake Slack has long
# answered; in production a row left 'sending' waits in_flight_s before its history is read.
CHILD = """
import sys
from alerts.outbox import Pacing, flush
from alerts.slack import SlackTransport
from models.clock import utc_now
from models.database import open_warehouse
from models.settings import SlackSettings
url, base, token = sys.argv[1:4]
slack = SlackTransport.from_settings(SlackSettings(base_url=base, token=token, timeout_s=5))
print(flush(open_warehouse(url), slack, utc_now(), Pacing(post_interval_s=0.25, in_flight_s=0)))
"""
# in_flight_s=0: here Slack stores a post before the kill, so nothing is still in flight when the next
# sender starts; the wait for a post that lands late is tested in tests/daemon/test_leader.py.


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    with FakeSlack(token=TOKEN) as fake:
        yield fake


def sender(url: str, fake: FakeSlack) -> subprocess.Popen[bytes]:
    args = [sys.executable, "-c", CHILD, url, fake.base_url + "/api/", TOKEN]
    return subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def kill_at_post(fake: FakeSlack, proc: subprocess.Popen[bytes], nth: int) -> None:
    """SIGKILL the sender when Slack has stored its nth post, before the answer leaves."""
    seen = 0
    lock = threading.Lock()

    def on_post(_message: Message) -> None:
        nonlocal seen
        with lock:
            seen += 1
            if seen == nth:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()

    fake.on_post = on_post


def test_sigkill_at_random_points_loses_nothing_and_posts_nothing_twice(
    warehouse: Engine, warehouse_url: str, slack: FakeSlack
) -> None:
    now = utc_now()
    settings = settings_for(slack)
    evaluations = [evaluation(r.id, [finding(rep(f"Rep {r.id}"), rule_id=r.id)], now) for r in RULES]
    process(evaluations, {r.id: r for r in RULES}, warehouse, settings, now)
    rng = random.Random(11)
    announcing = kill_and_finish(warehouse_url, slack, rng)
    # then resolutions: replies in the threads and edits of the announcing messages, killed the same way
    later = utc_now()
    process([evaluation(r.id, [], later) for r in RULES], {r.id: r for r in RULES}, warehouse, settings, later)
    replying = kill_and_finish(warehouse_url, slack, rng)
    with warehouse.connect() as conn:
        rows = conn.execute(select(notifications.c.id, notifications.c.kind, notifications.c.status)).all()
    assert {r.status for r in rows} == {"sent"}
    assert {r.kind for r in rows} == {"firing", "resolved", "update"}
    posted = Counter(m.metadata["event_payload"]["id"] for m in slack.messages() if m.metadata)
    assert posted == Counter(str(r.id) for r in rows if r.kind != "update")
    tops = [m for m in slack.messages() if m.thread_ts is None]
    assert all(m.edited for m in tops)
    assert {m.thread_ts for m in slack.messages() if m.thread_ts} == {m.ts for m in tops}
    # the "after ok" kills really hit posts Slack had stored (replies run out before the kills do)
    assert announcing >= 2
    assert replying >= 2


def kill_and_finish(url: str, slack: FakeSlack, rng: random.Random) -> int:
    """KILLS senders killed, half right after Slack stored a post; then one that finishes. Kills after ok."""
    after_ok = 0
    for attempt in range(KILLS):
        proc = sender(url, slack)
        if attempt % 2 == 0:
            before = len(slack.messages())
            kill_at_post(slack, proc, rng.randint(1, 2))
            proc.wait(timeout=60)
            after_ok += len(slack.messages()) > before
        else:
            time.sleep(rng.uniform(0.3, 1.2))  # start-up is most of it: kills land in imports, reads, posts
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=60)
        slack.on_post = None
    assert sender(url, slack).wait(timeout=120) == 0
    return after_ok
