"""Cursor arithmetic, without HTTP or a database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sync.cursor import Cursor, advance, is_boundary_duplicate, lower_bound

T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
START = T0 + timedelta(hours=1)


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


@pytest.mark.parametrize(
    ("before", "seen", "expected"),
    [
        (Cursor(), [], Cursor()),
        (Cursor(), [("a", at(1)), ("b", at(3)), ("c", at(2))], Cursor(at(3), frozenset({"b"}))),
        (Cursor(), [("a", at(3)), ("b", at(3))], Cursor(at(3), frozenset({"a", "b"}))),
        (Cursor(at(3), frozenset({"a"})), [("b", at(3))], Cursor(at(3), frozenset({"a", "b"}))),
        (Cursor(at(3), frozenset({"a"})), [("b", at(4))], Cursor(at(4), frozenset({"b"}))),
        (Cursor(at(3), frozenset({"a"})), [("z", at(1))], Cursor(at(3), frozenset({"a"}))),
        (Cursor(), [("a", None)], Cursor()),
        # Never later than the sync start: the late record is re-read next run.
        (Cursor(), [("a", at(30)), ("b", START + timedelta(seconds=1))], Cursor(START, frozenset())),
    ],
)
def test_advance(before: Cursor, seen: list, expected: Cursor) -> None:
    assert advance(before, seen, START) == expected


def test_lower_bound_is_inclusive_minus_lookback() -> None:
    assert lower_bound(Cursor(), timedelta(minutes=5)) is None
    assert lower_bound(Cursor(at(10)), timedelta(minutes=5)) == at(5)


@pytest.mark.parametrize(
    ("external_id", "value", "expected"),
    [("a", at(3), True), ("b", at(3), False), ("a", at(2), False), ("a", None, False)],
)
def test_boundary_duplicate(external_id: str, value: datetime | None, expected: bool) -> None:
    assert is_boundary_duplicate(Cursor(at(3), frozenset({"a"})), external_id, value) is expected


def test_json_round_trip() -> None:
    cursor = Cursor(at(3), frozenset({"b", "a"}))
    assert Cursor.from_json(cursor.to_json()) == cursor
    assert Cursor.from_json(None) == Cursor()


@settings(max_examples=200, deadline=None)
@given(
    stamps=st.lists(st.integers(min_value=0, max_value=20), min_size=1, max_size=60),
    page_size=st.integers(min_value=1, max_value=7),
    crash_after=st.integers(min_value=0, max_value=10),
    lookback=st.integers(min_value=0, max_value=3),
)
def test_a_crash_anywhere_then_resume_loses_nothing(
    stamps: list[int], page_size: int, crash_after: int, lookback: int
) -> None:
    """Records sorted by stamp, read in pages; a run dies after some pages; the next run resumes.

    Every record must be stored, and the resumed run skips exactly the boundary records
    the first run stored with the cursor's value.
    """
    records = sorted(((f"r{i}", at(s)) for i, s in enumerate(stamps)), key=lambda r: r[1])
    stored: set[str] = set()
    cursor = Cursor()
    pages = [records[i : i + page_size] for i in range(0, len(records), page_size)]
    for page in pages[:crash_after]:
        stored.update(r for r, _ in page)
        cursor = advance(cursor, page, START)
    since = lower_bound(cursor, timedelta(minutes=lookback))
    rest = [r for r in records if since is None or r[1] >= since]
    for external_id, value in rest:
        if not is_boundary_duplicate(cursor, external_id, value):
            stored.add(external_id)
        else:
            assert external_id in stored
    assert stored == {r for r, _ in records}
