"""The one source of 'now'.

Logic never reads the system clock itself: it receives a ``Clock`` (a zero-argument
callable returning an aware UTC datetime), so tests and ``check --as-of`` can pin time.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    """The system clock, in UTC. Only the composition root (service.py) should pass this."""
    return datetime.now(UTC)


class FixedClock:
    """A clock that stands still until told to move; for tests and ``--as-of``."""

    def __init__(self, moment: datetime) -> None:
        if moment.tzinfo is None:
            raise ValueError("FixedClock needs an aware datetime")
        self.moment = moment.astimezone(UTC)

    def __call__(self) -> datetime:
        return self.moment

    def advance(self, delta: timedelta) -> None:
        self.moment += delta
