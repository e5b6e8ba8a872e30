"""stalled_stage and stage_conversion_drop on hand-made funnels, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine

from rules.kinds.stalled_stage import _percentile
from rules.model import Scope
from tests.rules.company_data import CompanyData
from tests.rules.test_hygiene_kinds import run

NOW = datetime(2026, 6, 30, 22, 0, tzinfo=UTC)


def _history(data: CompanyData, owner: str, exits: int, dwell: float) -> None:
    """``exits`` deals that spent ``dwell`` days in Prospecting, then a day in Qualification, then were
    lost, spread over the last 300 days: 2 x ``exits`` stage exits, half of them after ``dwell`` days."""
    for i in range(exits):
        start = -300 + i * 250 / exits
        data.deal(owner, [("Prospecting", start), ("Qualification", start + dwell), ("Closed Lost", start + dwell + 1)])


@pytest.mark.parametrize(
    ("histogram", "percentile", "limit"),
    [({10: 1}, 90, 11), ({1: 9, 30: 1}, 90, 2), ({1: 9, 30: 1}, 95, 31), ({0: 50, 5: 50}, 50, 1)],
)
def test_percentile_of_whole_day_buckets_is_the_bucket_upper_edge(
    histogram: dict, percentile: float, limit: float
) -> None:
    assert _percentile(histogram, percentile) == limit


def test_no_data_no_finding_and_no_note(warehouse: Engine) -> None:
    for kind in ("stalled_stage", "stage_conversion_drop"):
        evaluation = run(warehouse, kind, now=NOW)
        assert (evaluation.findings, evaluation.notes) == ((), ())


@pytest.mark.parametrize(
    ("open_days", "count", "fires"),
    [
        (-60, 12, True),  # 12 open deals 60 days in Proposal, where deals usually stay 10 days
        (-5, 12, False),  # a healthy stage
        (-60, 4, False),  # too few open deals to judge (min_open 10)
    ],
)
def test_stalled_stage_against_the_pipelines_history(
    warehouse: Engine, open_days: float, count: int, fires: bool
) -> None:
    with warehouse.begin() as conn:
        data = CompanyData(conn, NOW)
        ana = data.rep("Ana")
        _history(data, ana, 60, 10)
        stuck = [data.deal(ana, [("Prospecting", open_days - 20), ("Proposal", open_days)]) for _ in range(count)]
    evaluation = run(warehouse, "stalled_stage", now=NOW, params={"max_samples": 3})
    assert evaluation.notes == ()
    if not fires:
        assert evaluation.findings == ()
        return
    (finding,) = evaluation.findings
    assert (finding.subject.type, finding.subject.name) == ("stage", "Proposal")
    assert (finding.value, finding.baseline, finding.sample_size) == (1.0, 0.1, count)
    assert finding.severity == "critical"
    assert finding.details["limit_days"] == 11
    assert len(finding.samples) == 3
    assert {s.id for s in finding.samples} <= set(stuck)
    assert finding.samples[0].days == pytest.approx(-open_days, abs=0.01)


def test_stalled_stage_without_enough_history_is_a_note_not_a_finding(warehouse: Engine) -> None:
    with warehouse.begin() as conn:
        data = CompanyData(conn, NOW)
        ana = data.rep("Ana")
        _history(data, ana, 15, 10)
        for _ in range(12):
            data.deal(ana, [("Prospecting", -80), ("Proposal", -60)])
    evaluation = run(warehouse, "stalled_stage", now=NOW)
    assert evaluation.findings == ()
    assert [n.subject.name for n in evaluation.notes] == ["Proposal"]
    assert "not evaluated: 42 deals left" in evaluation.notes[0].reason
    # a fixed limit needs no history
    (finding,) = run(warehouse, "stalled_stage", now=NOW, params={"limit_days": {"Proposal": 30}}).findings
    assert finding.details["limit_basis"] == "fixed"


def test_stalled_stage_as_of_an_earlier_instant_uses_the_stage_then(warehouse: Engine) -> None:
    with warehouse.begin() as conn:
        data = CompanyData(conn, NOW)
        ana = data.rep("Ana")
        _history(data, ana, 60, 10)
        # stuck in Proposal from -100 to -40, then won: stalled as of -45, not now
        for _ in range(12):
            data.deal(ana, [("Prospecting", -120), ("Proposal", -100), ("Closed Won", -40)])
    assert [f.subject.name for f in run(warehouse, "stalled_stage", now=data.at(-45)).findings] == ["Proposal"]
    assert run(warehouse, "stalled_stage", now=NOW).findings == ()


def _conversion(data: CompanyData, owner: str, start: float, end: float, exits: int, advanced: int) -> None:
    for i in range(exits):
        t = start + (end - start) * (i + 0.5) / exits
        nxt = "Qualification" if i < advanced else "Closed Lost"
        data.deal(owner, [("Prospecting", t - 5), (nxt, t)])


@pytest.mark.parametrize(
    ("recent_exits", "recent_advanced", "severity"),
    [
        (40, 8, "critical"),  # 20 % against 80 %
        (40, 20, "warn"),  # 50 % against 80 %: 0.625x
        (40, 24, None),  # 60 % against 80 %: 0.75x, but p = 0.003 on 40 exits
        (40, 30, None),  # 75 % against 80 %: normal variation
        (10, 0, None),  # too few exits (min_exits 20)
    ],
)
def test_conversion_drop_current_window_against_the_year_before(
    warehouse: Engine, recent_exits: int, recent_advanced: int, severity: str | None
) -> None:
    with warehouse.begin() as conn:
        data = CompanyData(conn, NOW)
        ana = data.rep("Ana")
        _conversion(data, ana, -450, -95, 200, 160)
        _conversion(data, ana, -85, -1, recent_exits, recent_advanced)
    findings = run(warehouse, "stage_conversion_drop", now=NOW).findings
    if severity is None:
        assert findings == ()
        return
    (finding,) = findings
    assert finding.subject.name == "Prospecting"
    assert finding.severity == severity
    assert finding.value == pytest.approx(recent_advanced / recent_exits, abs=1e-4)
    assert finding.baseline == pytest.approx(0.8, abs=1e-4)
    assert finding.sample_size == recent_exits
    assert finding.details["p_value"] < 0.001
    assert len(finding.samples) == 5
    assert {s.stage for s in finding.samples} == {"Closed Lost"}  # deals that left without moving forward


def test_conversion_counts_deleted_deals_only_until_their_deletion(warehouse: Engine) -> None:
    with warehouse.begin() as conn:
        data = CompanyData(conn, NOW)
        ana = data.rep("Ana")
        _conversion(data, ana, -450, -95, 200, 160)
        for i in range(40):
            data.deal(ana, [("Prospecting", -60 - i), ("Closed Lost", -50 + i)], deleted_days=-5)
    assert run(warehouse, "stage_conversion_drop", now=NOW).findings == ()
    assert len(run(warehouse, "stage_conversion_drop", now=data.at(-6)).findings) == 1


def test_the_packs_rule_tests_pass() -> None:
    """rules.d/tests/funnel.yaml, as `rules test` runs it."""
    from rules.ruletest import format_run, run_rule_tests

    root = Path(__file__).resolve().parents[2]
    result = run_rule_tests([root / "rules.d" / "tests" / "funnel.yaml"])
    assert not result.problems, result.problems
    lines = format_run(result)
    assert lines[-1].endswith("17 passed, 0 failed"), "\n".join(lines)


def test_stalled_stage_per_owner_names_the_rep_whose_deals_sit(warehouse: Engine) -> None:
    with warehouse.begin() as conn:
        data = CompanyData(conn, NOW)
        ana, ben = data.rep("Ana"), data.rep("Ben", team="Team B")
        _history(data, ana, 60, 10)
        stuck = [data.deal(ben, [("Prospecting", -80), ("Proposal", -60)]) for _ in range(10)]
        for _ in range(10):
            data.deal(ana, [("Prospecting", -8), ("Proposal", -3)])
    (finding,) = run(warehouse, "stalled_stage", now=NOW, params={"per_owner": True}).findings
    assert (finding.subject.type, finding.subject.id, finding.subject.team) == ("rep", ben, "Team B")
    assert (finding.value, finding.sample_size) == (1.0, 10)
    assert {s.id for s in finding.samples} <= set(stuck)
    assert "Ben's 10 open deals in Proposal" in finding.explanation
    # the stage as a whole: 10 of 20 stalled
    (stage,) = run(warehouse, "stalled_stage", now=NOW).findings
    assert (stage.subject.name, stage.value) == ("Proposal", 0.5)
    # the owner's side of a scope (applied to the owners after grouping; the history is the scope's too)
    (both,) = run(warehouse, "stalled_stage", now=NOW, scope=Scope(teams=("team a", "Team B"))).findings
    assert (both.subject.name, both.value, both.sample_size) == ("Proposal", 0.5, 20)
    assert run(warehouse, "stalled_stage", now=NOW, scope=Scope(exclude_reps=("Ben",))).findings == ()
