"""Keeping the daemon's memory flat for months, and an opt-in diagnostic of what grows.

The remedy (always on, glibc only): at most two malloc arenas (:func:`bound_malloc_arenas`) and
free pages handed back after each job (:func:`trim_malloc`). Found with the diagnostic below:
over a soak the RSS crept up by MBs a minute while the live heap and every object count stayed
flat, and ``malloc_free_mb`` (memory glibc holds but nobody uses) grew with it.

The diagnostic: ``python service.py run --debug-memory MINUTES`` logs one ``memory`` line every
MINUTES with the RSS and where it lives: the C heap as glibc's malloc sees it
(``malloc_in_use_mb``, and ``malloc_free_mb`` held but unused: fragmentation), SQLite's own memory
(page caches, ``sqlite_mb``), the thread count, and the object types whose live count grew most
since the first report (gc). Started with ``PYTHONTRACEMALLOC=8`` as well, it also lists the
Python allocation sites that grew most (tracemalloc; it slows the daemon several times, so it is a
separate choice). A leak shows as a type or a site growing report after report; fragmentation as
free malloc memory growing while the counts stay flat.
"""

from __future__ import annotations

import ctypes
import gc
import logging
import os
import threading
import tracemalloc
from collections import Counter
from pathlib import Path
from typing import Any

log = logging.getLogger("salespulse.daemon.memory")

TOP = 8
MB = 1024 * 1024


def rss_mb() -> float:
    """This process's resident set size (Linux /proc), 0 where there is none."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks")
    ] + [("keepcost", ctypes.c_size_t)]


def c_heap() -> dict[str, float]:
    """glibc's malloc (all arenas) and SQLite's allocator, in MB; empty where they cannot be asked."""
    out: dict[str, float] = {}
    libc = _libc()
    try:
        libc.mallinfo2.restype = _MallInfo2  # type: ignore[union-attr]
        info = libc.mallinfo2()
        out["malloc_in_use_mb"] = round((info.uordblks + info.hblkhd) / MB, 1)
        out["malloc_free_mb"] = round(info.fordblks / MB, 1)
    except AttributeError:  # not glibc, or older than 2.33
        pass
    try:
        import _sqlite3

        used = ctypes.CDLL(_sqlite3.__file__).sqlite3_memory_used
        used.restype = ctypes.c_int64
        out["sqlite_mb"] = round(used() / MB, 1)
    except (OSError, AttributeError, ImportError):
        pass
    return out


M_ARENA_MAX = -8  # glibc's mallopt parameter number


def _libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc: nothing to tune
        return None


def bound_malloc_arenas(arenas: int = 2) -> bool:
    """Let glibc's malloc use at most ``arenas`` arenas (unless ``MALLOC_ARENA_MAX`` says otherwise).

    glibc gives each thread that allocates concurrently its own arena, up to 8 per core; the
    daemon's job threads (syncs, checks, the outbox) allocate and free in turn in different
    arenas, and memory freed in one arena is not reused by another: RSS crept up by MBs a minute
    over a soak while the live heap and every object count stayed flat (``--debug-memory``).
    Two arenas hold it flat. Called before the job threads start; True when applied.
    """
    if os.environ.get("MALLOC_ARENA_MAX"):
        return False
    libc = _libc()
    return bool(libc is not None and hasattr(libc, "mallopt") and libc.mallopt(M_ARENA_MAX, arenas) == 1)


def trim_malloc() -> None:
    """Give the C heap's free pages back to the kernel (glibc ``malloc_trim``); after each job run,
    since a sync or a check frees tens of MB at once that would otherwise stay resident."""
    libc = _libc()
    if libc is not None and hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)


def type_counts() -> Counter[str]:
    """Live objects the collector tracks, by type name."""
    return Counter(type(o).__qualname__ for o in gc.get_objects())


class MemoryReport:
    """Compares each report with the first one (the baseline after start-up)."""

    def __init__(self, every_s: float, stop: threading.Event) -> None:
        self.every_s = every_s
        self.stop = stop
        self._counts: Counter[str] | None = None
        self._snapshot: tracemalloc.Snapshot | None = None

    def start(self) -> None:
        threading.Thread(target=self._loop, name="debug-memory", daemon=True).start()

    def _loop(self) -> None:
        while not self.stop.wait(self.every_s):
            self.report()

    def report(self) -> None:
        fields: dict[str, Any] = {"event": "memory", "rss_mb": round(rss_mb(), 1), "threads": threading.active_count()}
        fields |= c_heap()
        counts = type_counts()
        snapshot = tracemalloc.take_snapshot() if tracemalloc.is_tracing() else None
        if self._counts is None:
            self._counts, self._snapshot = counts, snapshot
            log.info("memory baseline: rss %.1f MB", fields["rss_mb"], extra={"fields": fields})
            return
        grown = counts.copy()
        grown.subtract(self._counts)
        fields["growing_types"] = [f"{name} {n:+d}" for name, n in grown.most_common(TOP) if n > 0]
        if snapshot is not None and self._snapshot is not None:
            fields["heap_mb"] = round(tracemalloc.get_traced_memory()[0] / MB, 1)
            fields["growing_sites"] = [
                f"{s.size_diff / 1024:+.0f} KiB {s.count_diff:+d} at "
                + " < ".join(f"{Path(f.filename).name}:{f.lineno}" for f in reversed(s.traceback))
                for s in snapshot.compare_to(self._snapshot, "traceback")[:TOP]
                if s.size_diff > 0
            ]
        log.info("memory: rss %.1f MB", fields["rss_mb"], extra={"fields": fields})
