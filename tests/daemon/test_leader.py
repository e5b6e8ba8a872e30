"""Two daemons on one warehouse: one leader runs the jobs; SIGKILL it mid-post and the other takes over
within the bound, finishes the delivery, and no notification reaches Slack twice or never."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select

from models.tables import notifications
from sandbox.company import SCALES
from sandbox.runner import Sandbox
from tests.daemon.daemon_process import DaemonProcess, clean_env, wait_for
from tests.daemon.test_run_rules import NO_ACTIVITY, SLIPPED

LEASE_S = 3.0


def events(daemon: DaemonProcess, event: str) -> list[dict]:
    return [line for line in daemon.lines() if line.get("event") == event]


@pytest.mark.slow
def test_killing_the_leader_hands_over_in_bound_with_no_duplicate(warehouse_url: str, tmp_path: Path) -> None:
    with Sandbox(tmp_path / "sb", scale=SCALES["small"], seed=1) as box:
        rules = tmp_path / "rules.yaml"
        rules.write_text("rules: []\n")  # the rules come once both daemons run
        env = clean_env(
            box.env(),
            SALESPULSE_DATABASE__URL=warehouse_url,
            SALESPULSE_RULES__PATHS=str(rules),
            SALESPULSE_SYNC__INTERVAL_MINUTES="0.1",
            SALESPULSE_SERVICE__LEASE_S=str(LEASE_S),
            SALESPULSE_SERVICE__OUTBOX_INTERVAL_S="1",
            SALESPULSE_SERVICE__RELOAD_POLL_S="0.5",
            SALESPULSE_SLACK__POST_INTERVAL_S="0",
            SALESPULSE_SLACK__TIMEOUT_S="3",  # a post is in flight for at most 3 * 3 + 10 s
        )
        first = DaemonProcess(env, tmp_path / "first.log")
        second = None
        try:
            wait_for("the first daemon to lead", lambda: events(first, "leader"), 60)
            second = DaemonProcess(env, tmp_path / "second.log")
            wait_for("the second daemon to start", lambda: events(second, "started"), 60)
            # The leader's first post hangs in Slack for longer than the handover: Slack takes it
            # after the leader died and after the new leader took over.
            in_flight = box.slack.faults.arm("timeout", path="chat.postMessage", delay=LEASE_S * 3)
            rules.write_text(NO_ACTIVITY + SLIPPED)
            wait_for("a post in flight", lambda: in_flight.fired, 60, every=0.05)
            assert not events(second, "leader")  # a standby runs nothing
            assert not [line for line in second.lines() if line.get("event") == "job"]

            first.process.kill()
            killed_at = time.time()
            first.process.wait(timeout=10)
            took_over = wait_for("the standby to take over", lambda: events(second, "leader"), 30, every=0.1)
            handover_s = _epoch(took_over[0]["ts"]) - killed_at
            assert handover_s <= LEASE_S + LEASE_S / 3 + 2, handover_s

            engine = create_engine(warehouse_url)
            count = select(func.count()).select_from(notifications)
            with engine.connect() as conn:
                queued = conn.execute(count).scalar()
            assert queued > 0
            wait_for(
                "every notification sent",
                lambda: _scalar(engine, count.where(notifications.c.status != "sent")) == 0,
                90,
            )
            time.sleep(LEASE_S * 3)  # a duplicate would arrive by now, if at all
            posted = [m for channel in ("sales-alerts", "sales-ops") for m in box.slack.messages(channel)]
            ids = [m.metadata["event_payload"]["id"] for m in posted if m.metadata]
            assert len(ids) == len(set(ids)), "a notification reached Slack twice"
            assert len(set(ids)) == _scalar(engine, count), "a notification never reached Slack"
            # The post that was in flight when the leader died had landed: found in Slack, not re-posted.
            assert sum(line.get("found_posted", 0) for line in second.lines() if line.get("event") == "job") == 1
            engine.dispose()
            code, _took = second.terminate(timeout=40)
            assert code == 0
        finally:
            first.kill()
            if second is not None:
                second.kill()


def _scalar(engine, query) -> int:
    with engine.connect() as conn:
        return conn.execute(query).scalar()


def _epoch(ts: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()
