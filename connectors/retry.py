"""Retrying one CRM request: waits per Retry-After, exponential back-off with jitter, bounded.

Built on tenacity. ``sleep`` is injectable so tests of 429 storms do not wait for real.
An auth failure gets exactly one re-authentication (``reauth``) and one more try.

Every wait (back-off, Bulk API polling) goes through :meth:`RetryPolicy.pause`, which
calls the :data:`keepalive` the sync engine set for the running stream at least every
``KEEPALIVE_S``: a sync that waits an hour on Salesforce still shows it is alive, and its
lock is not taken over by another machine.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TypeVar

from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt

from connectors.errors import AuthError, RateLimited, StreamFailed, TransientError

T = TypeVar("T")
log = logging.getLogger("salespulse.connectors")

KEEPALIVE_S = 30.0  # the longest sleep between two keep-alive calls
# What the engine runs to show the stream's sync is alive (its lock heartbeat); None outside a sync.
keepalive: ContextVar[Callable[[], None] | None] = ContextVar("keepalive", default=None)


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int = 6
    backoff_base_s: float = 1.0
    backoff_max_s: float = 120.0
    sleep: Callable[[float], None] = time.sleep
    jitter: Callable[[], float] = random.random

    def wait_for(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, RateLimited):
            return min(max(exc.retry_after, 0.0), self.backoff_max_s)
        backoff = min(self.backoff_base_s * 2 ** (state.attempt_number - 1), self.backoff_max_s)
        # "Full jitter": spread retries of many clients instead of synchronising them.
        return backoff * (0.5 + self.jitter() / 2)

    def pause(self, seconds: float) -> None:
        """Sleep, in slices of at most KEEPALIVE_S with a keep-alive before each."""
        left = seconds
        while left > 0:
            beat = keepalive.get()
            if beat is not None:
                beat()
            step = min(left, KEEPALIVE_S)
            self.sleep(step)
            left -= step


def call(fn: Callable[[], T], policy: RetryPolicy, *, what: str, reauth: Callable[[], None] | None = None) -> T:
    """Run ``fn`` with retries; raise StreamFailed when they are exhausted."""
    reauthed = False
    while True:
        try:
            return _with_backoff(fn, policy, what)
        except AuthError:
            if reauth is None or reauthed:
                raise
            log.warning("authentication refused during %s; re-authenticating once", what)
            reauth()
            reauthed = True


def _with_backoff(fn: Callable[[], T], policy: RetryPolicy, what: str) -> T:
    def before_sleep(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        log.warning(
            "retrying %s after %s (attempt %d of %d, waiting %.1fs)",
            what,
            exc,
            state.attempt_number,
            policy.max_retries + 1,
            state.next_action.sleep if state.next_action else 0,
        )

    retrying = Retrying(
        retry=retry_if_exception_type((RateLimited, TransientError)),
        stop=stop_after_attempt(policy.max_retries + 1),
        wait=policy.wait_for,
        sleep=policy.pause,
        before_sleep=before_sleep,
        reraise=True,
    )
    try:
        return retrying(fn)
    except (RateLimited, TransientError) as exc:
        raise StreamFailed(
            f"{what} still failing after {policy.max_retries} retries: {exc.message}; "
            "the CRM may be down or rate-limiting hard; the next run resumes from the last stored cursor",
        ) from exc
