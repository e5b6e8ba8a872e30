"""Stage win rates as an absorbing chain over the recent stage moves."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rules.win_rates import StageRow, solve

STAGES = [
    StageRow("salesforce", "default", "A", False, False),
    StageRow("salesforce", "default", "B", False, False),
    StageRow("salesforce", "default", "C", False, False),
    StageRow("salesforce", "default", "Won", True, True),
    StageRow("salesforce", "default", "Lost", True, False),
]


def moves(**counts: int) -> dict[tuple[str, str, str], int]:
    """``A_B=80`` means 80 moves from A to B."""
    return {("salesforce", *key.split("_")): n for key, n in counts.items()}


def test_a_linear_funnel_multiplies_its_forward_rates() -> None:
    rates = solve(STAGES, moves(A_B=80, A_Lost=20, B_C=50, B_Lost=50, C_Won=30, C_Lost=70), min_history=20)
    assert rates.rate("salesforce", "default", "C") == pytest.approx(0.3)
    assert rates.rate("salesforce", "default", "B") == pytest.approx(0.5 * 0.3)
    assert rates.rate("salesforce", "default", "A") == pytest.approx(0.8 * 0.5 * 0.3)
    assert rates.by_pipeline[("salesforce", "default")] == pytest.approx(30 / 170)


def test_skips_and_moves_back_count_once_each() -> None:
    # From A half skip to C; from C a tenth go back to B.
    rates = solve(STAGES, moves(A_B=50, A_C=50, B_C=100, C_Won=45, C_Lost=45, C_B=10), min_history=20)
    p_c = rates.rate("salesforce", "default", "C")
    assert p_c == pytest.approx(0.45 + 0.1 * p_c)  # B always goes on to C
    assert rates.rate("salesforce", "default", "A") == pytest.approx(p_c)


def test_a_stage_with_little_history_takes_the_pipelines_rate() -> None:
    rates = solve(STAGES, moves(A_B=5, B_C=100, C_Won=25, C_Lost=75), min_history=20)
    assert rates.rate("salesforce", "default", "A") == pytest.approx(0.25)  # 5 moves: the pipeline's 25 of 100
    assert rates.rate("salesforce", "default", "B") == pytest.approx(0.25)


def test_no_history_at_all_gives_zero_and_unknown_stages_the_pipelines_rate() -> None:
    empty = solve(STAGES, {}, min_history=20)
    assert empty.rate("salesforce", "default", "A") == 0.0
    rates = solve(STAGES, moves(C_Won=30, C_Lost=70), min_history=20)
    assert rates.rate("salesforce", "default", "Renamed") == pytest.approx(0.3)
    assert rates.rate("hubspot", "other", "X") == pytest.approx(0.3)  # the company's


@given(st.dictionaries(st.sampled_from(["A_B", "A_C", "A_Lost", "B_C", "B_A", "B_Lost", "C_Won", "C_Lost", "C_B"]),
                       st.integers(0, 500)))  # fmt: skip
def test_rates_are_probabilities(counts: dict[str, int]) -> None:
    rates = solve(STAGES, moves(**counts), min_history=1)
    for stage in ("A", "B", "C"):
        assert 0.0 <= rates.rate("salesforce", "default", stage) <= 1.0
