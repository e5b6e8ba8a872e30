"""Cursor arithmetic, without HTTP or a database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sync.cursor import MAX_BOUNDARY_IDS, Cursor, OutOfOrder, advance, in_order, is_boundary_duplicate, lower_bound

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


@pytest.mark.parametrize(
    ("last", "seen", "expected"),
    [
        (None, [], None),
        (None, [("a", at(1)), ("b", at(1)), ("c", None), ("d", at(2))], at(2)),
        (at(1), [("a", at(1))], at(1)),  # ties in any order
        (at(5), [("a", at(6))], at(6)),
    ],
)
def test_in_order_accepts_ascending_stamps(last: datetime | None, seen: list, expected: datetime | None) -> None:
    assert in_order(last, seen, "s") == expected


@pytest.mark.parametrize(
    ("last", "seen", "culprit"),
    [
        (None, [("a", at(2)), ("b", at(1))], "b"),
        (at(3), [("a", at(2))], "a"),  # older than the previous batch of this run
        (None, [("a", at(1)), ("n", None), ("c", at(3)), ("d", at(2))], "d"),
    ],
)
def test_in_order_refuses_an_older_stamp_naming_the_record(last: datetime | None, seen: list, culprit: str) -> None:
    with pytest.raises(OutOfOrder, match=f"record {culprit} has replication stamp .* ascending order"):
        in_order(last, seen, "s")


@settings(max_examples=200)
@given(st.lists(st.integers(min_value=0, max_value=50), max_size=30))
def test_in_order_raises_exactly_when_a_stamp_goes_back(minutes: list[int]) -> None:
    seen = [(str(i), at(m)) for i, m in enumerate(minutes)]
    descends = any(b < a for a, b in pairwise(minutes))
    if descends:
        with pytest.raises(OutOfOrder):
            in_order(None, seen, "s")
    else:
        assert in_order(None, seen, "s") == (at(max(minutes)) if minutes else None)


@pytest.mark.parametrize("extra", [0, 1])
def test_boundary_ids_are_bounded(extra: int, caplog: pytest.LogCaptureFixture) -> None:
    seen = [(f"id{i}", at(3)) for i in range(MAX_BOUNDARY_IDS + extra)]
    cursor = advance(Cursor(), seen, START)
    assert cursor.value == at(3)
    assert len(cursor.ids) == (0 if extra else MAX_BOUNDARY_IDS)
    assert ("ids are not kept" in caplog.text) == bool(extra)
