"""A digest Slack refused is tried again soon (it is not in the outbox), a bounded number of times."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Engine

from daemon.jobs import Outcome
from daemon.runner import DIGEST_RETRIES, DIGEST_RETRY, Daemon
from models.clock import FixedClock
from models.settings import Settings

T0 = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)


def test_a_failed_digest_is_retried_then_given_up(warehouse: Engine) -> None:
    clock = FixedClock(T0)
    daemon = Daemon(warehouse, Settings(), [], clock)
    assert daemon.lease.renew()
    outcomes = iter([Outcome("failed", error="Slack answered HTTP 500")] * (DIGEST_RETRIES + 1) + [Outcome("ok")])

    def work() -> Outcome:
        return next(outcomes)

    for attempt in range(DIGEST_RETRIES):
        daemon._run("digest", "digest", work)
        retry = daemon.scheduler.get_job("digest:retry")
        assert retry is not None, attempt
        assert retry.trigger.run_date == clock() + DIGEST_RETRY
        daemon.remove_job("digest:retry")
    daemon._run("digest", "digest", work)  # one failure more than the retries allowed: given up
    assert daemon.scheduler.get_job("digest:retry") is None
    daemon._run("digest", "digest", work)
    assert daemon.job_state["digest"]["status"] == "ok"
    assert daemon.scheduler.get_job("digest:retry") is None
