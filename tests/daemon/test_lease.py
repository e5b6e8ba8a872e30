"""One leader: the lease row on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine

from daemon.lease import Lease
from models.clock import FixedClock

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
LENGTH = timedelta(seconds=20)


def lease(warehouse: Engine, clock: FixedClock, holder: str) -> Lease:
    return Lease(warehouse, clock, LENGTH, holder=holder)


def test_one_holder_at_a_time_and_takeover_only_after_expiry(warehouse: Engine) -> None:
    clock = FixedClock(T0)
    a, b = lease(warehouse, clock, "host-a:1"), lease(warehouse, clock, "host-b:2")
    assert a.renew()
    assert not b.renew()
    clock.advance(timedelta(seconds=15))
    assert a.renew()  # renewed before expiry: kept
    clock.advance(timedelta(seconds=15))
    assert not b.renew()  # a's renewal moved the expiry
    assert a.held()
    clock.advance(timedelta(seconds=21))  # a died: no renewal for longer than the lease
    assert not a.held()
    assert b.renew()
    assert b.current_holder() == ("host-b:2", T0 + timedelta(seconds=51) + LENGTH)
    assert not a.renew()  # back from the dead: it does not take the lease back


def test_release_hands_over_at_once(warehouse: Engine) -> None:
    clock = FixedClock(T0)
    a, b = lease(warehouse, clock, "host-a:1"), lease(warehouse, clock, "host-b:2")
    assert a.renew()
    a.release()
    assert not a.held()
    assert b.renew()
    a.release()  # releasing a lease someone else holds changes nothing
    assert b.current_holder()[0] == "host-b:2"


def test_racing_standbys_elect_exactly_one(warehouse: Engine) -> None:
    clock = FixedClock(T0)
    old = lease(warehouse, clock, "host-old:1")
    assert old.renew()
    clock.advance(LENGTH * 2)
    standbys = [lease(warehouse, clock, f"host-{i}:{i}") for i in range(6)]
    won: list[bool] = [False] * len(standbys)
    start = threading.Barrier(len(standbys))

    def race(i: int) -> None:
        start.wait()
        won[i] = standbys[i].renew()

    threads = [threading.Thread(target=race, args=(i,)) for i in range(len(standbys))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(won) == 1
    assert old.current_holder()[0] == standbys[won.index(True)].holder


def test_a_leader_that_cannot_reach_the_database_steps_down_when_its_lease_ends(tmp_path) -> None:
    from models.database import open_warehouse

    engine = open_warehouse(f"sqlite:///{tmp_path}/w.db")
    clock = FixedClock(T0)
    a = lease(engine, clock, "host-a:1")
    assert a.renew()
    (tmp_path / "w.db").unlink()
    for suffix in ("-wal", "-shm"):
        (tmp_path / f"w.db{suffix}").unlink(missing_ok=True)
    engine.dispose()
    (tmp_path / "w.db").mkdir()  # the database is gone and cannot come back: every renewal fails
    clock.advance(timedelta(seconds=10))
    assert a.renew()  # unknown outcome: still ours until it expires
    clock.advance(timedelta(seconds=11))
    assert not a.renew()
    assert not a.held()
