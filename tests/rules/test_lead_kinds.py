"""lead_distribution, lead_qualification_rate and lead_response_time on hand-made leads."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import Engine, update

from models.settings import CompanySettings
from models.tables import reps
from rules.kinds.lead_distribution import LeadDistribution, Params, _Rep, gini
from tests.rules.company_data import CompanyData
from tests.rules.test_hygiene_kinds import run

NOW = datetime(2026, 9, 30, 21, 30, tzinfo=UTC)


def _assign(data: CompanyData, counts: dict[str, int], *, start: float = -29, end: float = -1) -> None:
    for rep, count in counts.items():
        for i in range(count):
            data.lead(rep, start + (end - start) * (i + 0.5) / max(count, 1))


@given(st.lists(st.integers(0, 1000), min_size=1, max_size=30))
def test_gini_is_between_0_and_1_and_0_for_equal_loads(loads: list[int]) -> None:
    value = gini([float(x) for x in loads])
    assert 0 <= value < 1
    assert gini([float(loads[0])] * len(loads)) == 0


@pytest.mark.parametrize(
    ("counts", "fires"),
    [
        ({"Ana": 15, "Ben": 15, "Cleo": 14, "Dev": 15}, False),  # round robin
        ({"Ana": 40, "Ben": 8, "Cleo": 6, "Dev": 5}, True),  # one rep takes two thirds
        ({"Ana": 6, "Ben": 1, "Cleo": 1, "Dev": 1}, False),  # expected counts under 5: not run
    ],
)
def test_lead_distribution_within_a_team(warehouse: Engine, counts: dict[str, int], fires: bool) -> None:
    with warehouse.begin() as conn:
        data = CompanyData(conn, NOW)
        ids = {name: data.rep(name) for name in counts}
        data.rep("Manager")  # takes no leads: not expected to
        other = data.rep("Eve", team="Team B")
        _assign(data, {ids[n]: c for n, c in counts.items()})
        _assign(data, {other: 30})  # alone in its team: nothing to compare
        _assign(data, {ids["Ana"]: 100}, start=-200, end=-120)  # before the window
    evaluation = run(warehouse, "lead_distribution", now=NOW)
    if not fires:
        assert evaluation.findings == ()
        if sum(counts.values()) < 20:
            assert [n.subject.name for n in evaluation.notes] == ["Team A"]
        return
    (finding,) = evaluation.findings
    assert (finding.subject.type, finding.subject.name, finding.sample_size) == ("team", "Team A", 59)
    assert finding.severity == "critical"
    assert finding.details["over_served"] == [ids["Ana"]]
    assert set(finding.details["under_served"]) == {ids["Cleo"], ids["Dev"]}
    assert "Ana 40 (68% vs 25%, capacity 1 (default))" in finding.explanation


def test_capacity_weights_inactive_reps_and_new_hires(warehouse: Engine) -> None:
    with warehouse.begin() as conn:
        data = CompanyData(conn, NOW)
        ana, ben, cleo = data.rep("Ana"), data.rep("Ben"), data.rep("Cleo", hired_on=date(2026, 9, 15))
        gone = data.rep("Gone", active=False)
        _assign(data, {ana: 60, ben: 20, gone: 1})
        _assign(data, {cleo: 10}, start=-14)
    # Ana works double capacity; Cleo joined half-way through the window; Gone has left
    assert run(warehouse, "lead_distribution", now=NOW, params={"weights": {"ana": 2}}).findings == ()
    (uneven,) = run(warehouse, "lead_distribution", now=NOW).findings
    assert uneven.details["over_served"] == [ana]
    assert ben not in uneven.details["over_served"] + uneven.details["under_served"]


def _rep(**facts: object) -> _Rep:
    base = {"id": "sf:ana", "name": "Ana", "email": "ana@x.com", "team_id": "t", "team": "T", "hired_on": None,
            "capacity": None, "leave_from": None, "leave_until": None, "in_window": 0, "before": 0}  # fmt: skip
    return _Rep(**(base | facts))


# NOW's 30-day window is the days 2026-08-31 .. 2026-09-29.
@pytest.mark.parametrize(
    ("rep", "weights", "settings", "expected"),
    [
        ({}, {}, {}, (1.0, "default", 1.0)),
        ({}, {"ANA": 2}, {}, (2.0, "rule", 2.0)),  # names match case-insensitively
        ({}, {}, {"ana@x.com": 0.5}, (0.5, "settings", 0.5)),
        ({"capacity": 0.8}, {}, {"ana@x.com": 0.5}, (0.8, "quota file", 0.8)),  # the file wins over settings
        ({"capacity": 0.8}, {"sf:ana": 3}, {"ana@x.com": 0.5}, (3.0, "rule", 3.0)),  # the rule wins over both
        ({}, {"ben": 2}, {"ben@x.com": 0.5}, (1.0, "default", 1.0)),  # other reps' capacities
        ({"leave_from": date(2026, 9, 15)}, {}, {}, (1.0, "default", 0.5)),  # on leave since mid-window
        ({"leave_from": date(2026, 9, 1), "leave_until": date(2026, 9, 10)}, {}, {}, (1.0, "default", 2 / 3)),
        ({"capacity": 0.5, "leave_from": date(2026, 8, 1), "leave_until": date(2026, 9, 14)}, {}, {},
         (0.5, "quota file", 0.25)),  # back for the second half
        ({"leave_from": date(2026, 8, 1)}, {}, {}, (1.0, "default", 0.0)),  # the whole window: not judged
        ({"leave_from": date(2026, 8, 1), "leave_until": date(2026, 9, 29)}, {}, {}, (1.0, "default", 0.0)),
        ({"leave_from": date(2026, 9, 30)}, {}, {}, (1.0, "default", 1.0)),  # leave starts today
        ({"leave_from": date(2026, 1, 1), "leave_until": date(2026, 8, 30)}, {}, {}, (1.0, "default", 1.0)),
        ({"hired_on": date(2026, 9, 15), "leave_from": date(2026, 9, 20), "leave_until": date(2026, 9, 24)}, {}, {},
         (1.0, "default", 10 / 30)),  # hired mid-window, then five days off
        ({"capacity": 0.0}, {}, {}, (0.0, "quota file", 0.0)),
    ],
)  # fmt: skip
def test_capacity_precedence_and_share_of_the_window_worked(
    rep: dict, weights: dict, settings: dict, expected: tuple[float, str, float]
) -> None:
    got = LeadDistribution._capacity(_rep(**rep), Params(weights=weights), CompanySettings(lead_capacity=settings), NOW)
    assert (got.capacity, got.source) == expected[:2]
    assert got.weight == pytest.approx(expected[2])


@pytest.mark.parametrize(
    ("ana", "fires"),
    [
        ({}, True),  # Ana took 60 of 90 leads with equal capacity
        ({"lead_capacity": 3.0}, False),  # the quota file says she takes three shares
        ({"lead_capacity": 3.0, "leave_from": date(2026, 9, 15)}, True),  # ...but she was away half the window
    ],
)
def test_quota_file_capacity_and_leave_reach_the_evaluation(warehouse: Engine, ana: dict, fires: bool) -> None:
    with warehouse.begin() as conn:
        data = CompanyData(conn, NOW)
        ids = [data.rep(name) for name in ("Ana", "Ben", "Cleo")]
        _assign(data, {ids[0]: 60, ids[1]: 15, ids[2]: 15})
        if ana:
            conn.execute(update(reps).where(reps.c.id == ids[0]).values(**ana))
    findings = run(warehouse, "lead_distribution", now=NOW).findings
    assert [f.subject.name for f in findings] == (["Team A"] if fires else [])
    if fires:
        (named,) = [x for x in findings[0].details["per_rep"] if x["rep_id"] == ids[0]]
        assert named["capacity_from"] == ("quota file" if ana else "default")
        assert "Ana 60 (67% vs" in findings[0].explanation
        assert ("capacity 3 (quota file, 50% of the window worked)" if ana else "capacity 1 (default)") in (
            findings[0].explanation
        )


def _cohorts(data: CompanyData, rep: str, current: tuple[int, int], baseline: tuple[int, int]) -> None:
    """(qualified, total) leads created 45-75 days ago (current cohort) and in the year before."""
    for (qualified, total), (start, end) in ((current, (-74, -46)), (baseline, (-400, -80))):
        for i in range(total):
            data.lead(rep, start + (end - start) * (i + 0.5) / total, qualified=i < qualified)


@pytest.mark.parametrize(
    ("current", "severity"),
    [((3, 60), "critical"), ((36, 200), "warn"), ((17, 60), None), ((12, 60), None), ((0, 30), None)],
)
def test_qualification_rate_of_a_mature_cohort_against_the_year_before(
    warehouse: Engine, current: tuple[int, int], severity: str | None
) -> None:
    with warehouse.begin() as conn:
        data = CompanyData(conn, NOW)
        ana = data.rep("Ana")
        _cohorts(data, ana, current, (90, 300))
        for i in range(40):  # young leads are not judged yet
            data.lead(ana, -1 - i * 0.5, qualified=False)
    findings = run(warehouse, "lead_qualification_rate", now=NOW).findings
    if severity is None:
        assert findings == ()
        return
    (finding,) = findings
    assert (finding.subject.type, finding.subject.name) == ("team", "Team A")
    assert finding.severity == severity
    assert (finding.value, finding.baseline) == (round(current[0] / current[1], 4), 0.3)
    assert finding.sample_size == current[1]


def test_qualification_rate_per_lead_source(warehouse: Engine) -> None:
    with warehouse.begin() as conn:
        data = CompanyData(conn, NOW)
        ana = data.rep("Ana")
        for source, rate in (("Web", 0.3), ("Event", 0.02)):
            for i in range(60):
                data.lead(ana, -74 + i * 0.45, qualified=i < rate * 60, lead_source=source)
            for i in range(300):
                data.lead(ana, -400 + i, qualified=i < 90, lead_source=source)
    (finding,) = run(warehouse, "lead_qualification_rate", now=NOW, params={"group_by": "source"}).findings
    assert (finding.subject.type, finding.subject.name) == ("lead_source", "Event")


def test_lead_response_time_names_the_rep_and_team_much_slower_than_the_rest(warehouse: Engine) -> None:
    with warehouse.begin() as conn:
        data = CompanyData(conn, NOW)
        slow, fast, faster = data.rep("Slow"), data.rep("Fast"), data.rep("Faster")
        late, later = data.rep("Late", team="Team L"), data.rep("Later", team="Team L")
        quick = data.rep("Quick", team="Team B")
        delays = ((slow, 3.0), (fast, 0.1), (faster, 0.05), (late, 2.0), (later, 2.5), (quick, 0.1))
        for rep, delay in delays:
            for i in range(25):
                created = -28 + i
                data.lead(rep, created, activity_days=[created + delay])
        for i in range(10):  # too few to judge on their own, and untouched
            data.lead(data.rep(f"New {i}", team="Team C"), -10)
    findings = run(warehouse, "lead_response_time", now=NOW).findings
    by_subject = {(f.subject.type, f.subject.name): f for f in findings}
    # Team A: one slow rep of three is the rep's problem, not the team's
    assert set(by_subject) == {("rep", "Slow"), ("rep", "Late"), ("rep", "Later"), ("team", "Team L")}
    rep = by_subject[("rep", "Slow")]
    assert (rep.value, rep.sample_size, rep.severity) == (1.0, 25, "critical")
    assert rep.baseline == pytest.approx((75 + 10 - 25) / (160 - 25), abs=1e-4)
    assert len(rep.samples) == 5
    assert {s.owner for s in rep.samples} == {"Slow"}
    assert rep.samples[0].days == pytest.approx(28, abs=0.01)  # the longest-waiting lead first
    team = by_subject[("team", "Team L")]
    assert (team.value, team.sample_size, team.severity) == (1.0, 50, "critical")
    assert team.labels["team"] == "Team L"


def test_lead_response_time_stays_quiet_when_everyone_is_slow(warehouse: Engine) -> None:
    with warehouse.begin() as conn:
        data = CompanyData(conn, NOW)
        for name in ("Ana", "Ben", "Cleo"):
            rep = data.rep(name)
            for i in range(25):
                data.lead(rep, -28 + i, activity_days=[-28 + i + 5])
    assert run(warehouse, "lead_response_time", now=NOW).findings == ()
