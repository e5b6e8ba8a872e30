"""HubSpot's burst rate limits, for tests that need the 429s to come from load.

https://developers.hubspot.com/docs/api/usage-details: private apps get a rolling
burst allowance (100 requests per 10 s on Free/Starter), and the CRM search endpoints
have their own per-second limit (5/s) instead of counting against the burst. Windows
slide over an injectable monotonic clock so tests can step time.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class RateLimits:
    burst: int = 100
    burst_window: float = 10.0  # seconds
    search_per_second: int = 5


@dataclass(frozen=True)
class Verdict:
    """The outcome of asking a window for a slot, with what the headers report."""

    admitted: bool
    limit: int
    remaining: int
    retry_after: int  # whole seconds until a slot frees; 0 when admitted


class SlidingWindow:
    def __init__(self, limit: int, window: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.window = window
        self._clock = clock
        self._stamps: deque[float] = deque()
        self._lock = threading.Lock()

    def take(self) -> Verdict:
        with self._lock:
            now = self._clock()
            while self._stamps and self._stamps[0] <= now - self.window:
                self._stamps.popleft()
            if len(self._stamps) >= self.limit:
                wait = self._stamps[0] + self.window - now
                return Verdict(False, self.limit, 0, max(1, math.ceil(wait)))
            self._stamps.append(now)
            return Verdict(True, self.limit, self.limit - len(self._stamps), 0)
