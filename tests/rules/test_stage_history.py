"""Windows read from the per-day stage rollups count exactly what the raw stage changes hold.

The edges are where a split into whole days and raw edge days can go wrong: a change at the
window's start (excluded), just after it, at a midnight inside, at the end (included), and deals
deleted after the instant (counted then) or before it (not). Each case compares the rollup read
with the raw read a rep scope forces, and with the count written by hand.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import Engine, update

from models.settings import CompanySettings
from models.tables import opportunities
from rules import stage_history
from rules.model import Scope, Warehouse
from sync import rollups
from tests.rules.company_data import CompanyData

NOW = datetime(2026, 6, 15, 14, 30, tzinfo=UTC)
RAW = Scope(exclude_reps=("nobody@example.invalid",))  # names reps: read from stage_changes


def test_day_ranges_join_consecutive_days() -> None:
    days = [date(2026, 1, 3), date(2026, 1, 1), date(2026, 1, 2), date(2026, 1, 5), date(2026, 1, 5)]
    assert rollups.day_ranges(days) == [(date(2026, 1, 1), date(2026, 1, 3)), (date(2026, 1, 5), date(2026, 1, 5))]
    assert rollups.day_ranges([]) == []


@pytest.mark.parametrize(
    ("lo_days", "hi_days", "expected"),
    [
        (-30, 0, 7),  # every counted change below lies in (NOW - 30 d, NOW]
        (-1, 0, 2),  # shorter than two days: all raw
        (-20, -5, 4),  # both ends inside the history
        (-10, 0, 4),  # the start exactly on a change (excluded)
    ],
)
def test_a_window_counts_the_same_from_rollups_as_from_the_changes(
    warehouse: Engine, lo_days: float, hi_days: float, expected: int
) -> None:
    midnight = datetime(2026, 6, 6, tzinfo=UTC)  # a change exactly at a midnight inside the windows
    with warehouse.begin() as conn:
        data = CompanyData(conn, NOW)
        rep = data.rep("Ana")
        data.deal(rep, [("Prospecting", -40), ("Qualification", -29.99), ("Proposal", -10)])
        data.deal(rep, [("Prospecting", -35), ("Qualification", (midnight - NOW).total_seconds() / 86400)])
        data.deal(rep, [("Prospecting", -12), ("Qualification", -6), ("Closed Lost", -0.5)])
        gone_later = data.deal(rep, [("Prospecting", -15), ("Qualification", -14)])
        data.deal(rep, [("Prospecting", -9), ("Qualification", 0)])  # exactly at NOW: included
        gone_before = data.deal(rep, [("Prospecting", -9), ("Qualification", -8)])
        conn.execute(
            update(opportunities).where(opportunities.c.id == gone_later).values(deleted_at=NOW + timedelta(days=1))
        )
        conn.execute(
            update(opportunities).where(opportunities.c.id == gone_before).values(deleted_at=NOW - timedelta(days=1))
        )
        rollups.rebuild(conn, "salesforce")  # as the sync leaves them after those deletes
    lo, hi = NOW + timedelta(days=lo_days), NOW + timedelta(days=hi_days)
    with warehouse.connect() as conn:
        w = Warehouse(conn, CompanySettings())
        moves = stage_history.moves(w, lo, hi, NOW, Scope())
        assert moves == stage_history.moves(w, lo, hi, NOW, RAW)
        assert sum(moves.values()) == expected
        stays = stage_history.stays(w, lo, hi, NOW, Scope(), by_stage=True)
        assert stays == stage_history.stays(w, lo, hi, NOW, RAW, by_stage=True)
        assert sum(sum(h.values()) for h in stays.values()) == expected
