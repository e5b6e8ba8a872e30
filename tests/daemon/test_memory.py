"""The daemon's memory stays flat: freed C heap goes back to the kernel, and repeated digests leave
no growing object count (a leak would show as a type that grows with the number of runs)."""

from __future__ import annotations

import gc
import threading
from collections import Counter

from sqlalchemy import Engine

from alerts.digest import plan_digests, queue_digests
from alerts.outbox import Pacing, flush
from daemon.memory import rss_mb, trim_malloc, type_counts
from models.clock import utc_now
from sandbox.slack import FakeSlack
from tests.alerts.helpers import TOKEN, settings_for, transport
from tests.alerts.test_digest import ALERTS, STANDING

RUNS = 20  # digests queued and delivered per window (two per run: two channels)


def test_trim_gives_a_jobs_freed_heap_back() -> None:
    """What a job thread allocated and freed (blocks below glibc's mmap threshold, as rows and
    pages are) stays resident until trimmed: the soak's creeping RSS."""
    kept: list[bytearray] = []

    def job() -> None:
        blocks = [bytearray(100_000) for _ in range(600)]  # 60 MB in this thread's arena
        kept.append(bytearray(100_000))  # something stays live above them, as in a real heap
        blocks.clear()

    thread = threading.Thread(target=job)
    thread.start()
    thread.join()
    before = rss_mb()
    trim_malloc()
    assert before - rss_mb() > 30


def test_repeated_digests_leave_no_growing_object_count(warehouse: Engine) -> None:
    with FakeSlack(token=TOKEN) as slack:
        settings = settings_for(slack, digest_chart=False)
        digests = plan_digests(STANDING, ALERTS, settings.slack)
        client = transport(settings)

        def run(times: int) -> None:
            for _ in range(times):
                queue_digests(warehouse, digests, utc_now(), period=None)
                assert flush(warehouse, client, utc_now(), Pacing(post_interval_s=0)).stopped is None

        run(5)  # warm: caches (compiled statements, channel ids) fill once

        def growth(runs: int) -> Counter[str]:
            slack.reset()  # the fake keeps every message it was sent (in this process): not ours to count
            gc.collect()
            before = type_counts()
            run(runs)
            slack.reset()
            gc.collect()
            grown = type_counts()
            grown.subtract(before)
            return grown

        # A leak grows with every run, in both windows; noise (the fake's request threads winding down,
        # a cache settling) does not repeat.
        first, second = growth(RUNS), growth(RUNS)
    leaking = {name: (first[name], second[name]) for name in first if first[name] >= RUNS and second[name] >= RUNS}
    assert leaking == {}
