"""``/healthz``: is the daemon doing its job? Scheduler alive and every source's data fresh.

Freshness is a property of the warehouse, not of this process, so a standby answers the
same as the leader: if no daemon keeps the data fresh, every replica says so. A daemon
that started less than one threshold ago is not blamed for data it has not had time to
sync yet.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from models.inventory import last_successful_syncs


@dataclass(frozen=True)
class Health:
    ok: bool
    reasons: tuple[str, ...]

    def text(self) -> str:
        return "ok\n" if self.ok else "".join(f"{reason}\n" for reason in self.reasons)


def check_health(
    engine: Engine,
    sources: list[str],
    now: datetime,
    *,
    started_at: datetime,
    max_age: timedelta,
    loop_seen_at: datetime,
    loop_max_gap: timedelta,
) -> Health:
    reasons: list[str] = []
    if now - loop_seen_at > loop_max_gap:
        reasons.append(f"the daemon's main loop has not run for {(now - loop_seen_at).total_seconds():.0f} s")
    try:
        with engine.connect() as conn:
            synced = last_successful_syncs(conn)
    except SQLAlchemyError as exc:
        return Health(False, (*reasons, f"the warehouse does not answer: {str(exc).splitlines()[0]}"))
    for source in sources:
        streams = {stream: at for (src, stream), at in synced.items() if src == source}
        if not streams:
            if now - started_at > max_age:
                reasons.append(f"{source}: no successful sync yet (threshold {_minutes(max_age)})")
            continue
        for stream, at in sorted(streams.items()):
            if now - at > max_age:
                reasons.append(
                    f"{source}/{stream}: last successful sync {at:%Y-%m-%d %H:%M:%S}Z, "
                    f"{_minutes(now - at)} ago (threshold {_minutes(max_age)})"
                )
    return Health(not reasons, tuple(reasons))


def _minutes(delta: timedelta) -> str:
    return f"{delta.total_seconds() / 60:.1f} min"
