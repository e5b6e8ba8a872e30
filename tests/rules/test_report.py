"""Terminal output of check --dry-run and rules backtest: numbers as people read them, nothing hidden."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from rich.console import Console

from rules.findings import Evaluation, Finding, Note, SampleRecord, Subject
from rules.report import format_value, print_backtest, print_evaluations

AT = datetime(2026, 3, 16, 8, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "unit", "shown"),
    [
        (0.456, "share", "46%"),
        (123456.7, "money", "123,457 EUR"),
        (12.34, "days", "12.3 d"),
        (2.5, "ratio", "2.50x"),
        (-3.21, "zscore", "z -3.2"),
        (7.0, "count", "7"),
        (7.25, "count", "7.25"),
    ],
)
def test_values_are_shown_in_their_unit(value: float, unit: str, shown: str) -> None:
    assert format_value(value, unit, "EUR") == shown


def finding(name: str, severity: str = "warn", samples: tuple[SampleRecord, ...] = ()) -> Finding:
    subject = Subject("rep", f"id-{name}", name, "West")
    return Finding("r", "k", subject, severity, 0.4, 1.0, 12, "share", f"{name} x", samples=samples)


def test_dry_run_output_names_findings_notes_and_failures() -> None:
    out = Console(width=200, record=True)
    evaluations = [
        Evaluation(
            "r",
            "k",
            AT,
            (
                finding(
                    "Ana",
                    "critical",
                    tuple(SampleRecord(f"d{i}", f"Deal {i}", 1000.0 * i, days=i) for i in (1, 2, 3, 4)),
                ),
            ),
            (Note("r", Subject("rep", "b", "Bo"), "no quota"),),
        ),
        Evaluation("s", "k", AT, error="ZeroDivisionError: boom"),
    ]
    print_evaluations(out, evaluations, AT, "USD", "Europe/Berlin")
    text = out.export_text()
    assert "as of 2026-03-16 09:00 CET: 2 rule(s) evaluated, 1 finding(s)" in text
    row = next(line for line in text.splitlines() if "Ana" in line)
    cells = [cell.strip() for cell in row.split("│")[1:-1]]
    assert cells == ["r", "critical", "Ana (rep)", "West", "40%", "100%", "12", "Ana x", "Deal 1 (1,000 USD, 1 d)"]
    assert "Deal 3 (3,000 USD, 3 d)" in text
    assert "Deal 4" not in text
    assert "not evaluated (1):\n  r: rep Bo: no quota" in text
    assert "rule s failed: ZeroDivisionError: boom" in text


def test_backtest_names_at_most_six_subjects_per_instant_and_counts_all() -> None:
    out = Console(width=200, record=True)
    names = ["A", "B", "C", "D", "E", "F", "G", "H"]
    runs = [
        (AT, [Evaluation("r", "k", AT, tuple(finding(n) for n in names))]),
        (AT + timedelta(days=7), [Evaluation("r", "k", AT, ())]),
        (AT + timedelta(days=14), [Evaluation("r", "k", AT, error="boom")]),
    ]
    print_backtest(out, ["r"], runs, "UTC")
    text = out.export_text()
    assert "A, B, C, D, E, F, +2 more" in text
    assert "failed: boom" in text
    assert "r: fired at 1 of 3 instant(s), 8 finding(s), 8 distinct subject(s)" in text
