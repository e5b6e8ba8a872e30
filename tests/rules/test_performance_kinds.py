"""quota_attainment, peer_outlier and pipeline_coverage on hand-built warehouses (SQLite and
PostgreSQL): the edge cases a sales team runs into, one story per test."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Connection, Engine, insert

from models.settings import CompanySettings
from models.tables import quotas
from rules.findings import Evaluation
from rules.kinds import KINDS
from rules.model import Rule, Warehouse
from rules.standing import standing
from sync import rollups
from tests.rules.company_data import CompanyData

NOW = datetime(2026, 5, 14, 18, 0, tzinfo=UTC)  # day 44 of Q2 2026 (91 days): 48 % elapsed
Q2 = (date(2026, 4, 1), date(2026, 6, 30))
Q1 = (date(2026, 1, 1), date(2026, 3, 31))
PERFORMANCE_KINDS = ("quota_attainment", "peer_outlier", "pipeline_coverage")


def quota(conn: Connection, rep: str, amount: float, period: tuple[date, date] = Q2, source: str = "file") -> None:
    conn.execute(
        insert(quotas).values(
            source=source,
            rep_id=rep,
            period_start=period[0],
            period_end=period[1],
            amount=amount,
            currency="USD",
            amount_reporting=amount,
            synced_at=NOW,
        )
    )


def won(data: CompanyData, owner: str, days: float, amount: float) -> str:
    """A deal won ``days`` from now (negative: ago), its close date that day."""
    day = data.at(days).date()
    return data.deal(
        owner, [("Negotiation", days - 10), ("Closed Won", days)], amount=amount, close_dates=[(days, day)]
    )


def open_deal(data: CompanyData, owner: str, amount: float, closes: date = date(2026, 6, 15)) -> str:
    return data.deal(owner, [("Prospecting", -20), ("Proposal", -5)], amount=amount, close_dates=[(-5, closes)])


def run(
    engine: Engine, kind: str, params: dict | None = None, now: datetime = NOW, severity: dict | None = None, **company
) -> Evaluation:
    rule = Rule(id="r", kind=kind, params=params or {}, labels={"area": "test"}, severity=severity or {})
    with engine.connect() as conn:
        return KINDS[kind].evaluate(rule, Warehouse(conn, CompanySettings(**company)), now)


def by_name(evaluation: Evaluation) -> dict[str, object]:
    return {f.subject.name: f for f in evaluation.findings}


@pytest.mark.parametrize("kind", PERFORMANCE_KINDS)
def test_an_empty_warehouse_gives_nothing(warehouse: Engine, kind: str) -> None:
    evaluation = run(warehouse, kind)
    assert (evaluation.findings, evaluation.notes) == ((), ())


# -- quota_attainment --------------------------------------------------------------------------------
def test_behind_on_pace_and_ahead_reps_and_their_team(warehouse: Engine) -> None:
    with warehouse.begin() as conn:
        data = CompanyData(conn, NOW)
        names = {n: data.rep(n) for n in ("Ana", "Ben", "Cleo")}
        for rep in names.values():
            quota(conn, rep, 100_000)
        won(data, names["Ana"], -30, 10_000)  # 21 % of the 48,000 due by now
        won(data, names["Ben"], -20, 30_000)
        won(data, names["Ben"], -2, 20_000)  # 104 %
        won(data, names["Cleo"], -3, 110_000)  # 229 %
        big = open_deal(data, names["Ana"], 40_000)
        open_deal(data, names["Ana"], 5_000)
        open_deal(data, names["Ana"], 90_000, closes=date(2026, 7, 15))  # next quarter: not in the samples
    found = by_name(run(warehouse, "quota_attainment"))
    assert set(found) == {"Ana", "Cleo"}  # the team: 170,000 of 144,000 due, on pace
    ana, cleo = found["Ana"], found["Cleo"]
    assert ana.severity == "critical"
    assert ana.value == pytest.approx(10_000 / (100_000 * (43.75 / 91)), rel=1e-3)
    assert (ana.baseline, ana.unit, ana.sample_size) == (1.0, "ratio", 1)
    assert ana.details["direction"] == "behind"
    assert ana.details["required_daily"] == pytest.approx(90_000 / (91 - 43.75), rel=1e-3)
    assert ana.samples[0].id == big
    assert len(ana.samples) == 2
    assert ana.labels == {"area": "test", "team": "Team A"}
    assert "21 % of quota pace" in ana.explanation
    assert (cleo.severity, cleo.labels["direction"]) == ("warn", "ahead")
    assert cleo.samples[0].amount == 110_000


def test_one_rep_alone_and_the_team_of_one(warehouse: Engine) -> None:
    with warehouse.begin() as conn:
        data = CompanyData(conn, NOW)
        solo = data.rep("Solo")
        quota(conn, solo, 100_000)
        won(data, solo, -10, 25_000)  # 52 % of pace: warn
    found = run(warehouse, "quota_attainment").findings
    assert sorted((f.subject.type, f.severity) for f in found) == [("rep", "warn"), ("team", "warn")]


@pytest.mark.parametrize(
    ("setup", "reason"),
    [("none", "no quota for FY2026 Q2: not evaluated"), ("zero", "no quota for FY2026 Q2: not evaluated")],
)
def test_a_rep_without_quota_is_noted_never_behind(warehouse: Engine, setup: str, reason: str) -> None:
    with warehouse.begin() as conn:
        data = CompanyData(conn, NOW)
        rep = data.rep("Nora")
        data.rep("Manager")  # no quota and no deals: neither noted nor judged
        if setup == "zero":
            quota(conn, rep, 0)
        open_deal(data, rep, 10_000)
    evaluation = run(warehouse, "quota_attainment")
    assert evaluation.findings == ()
    assert [(n.subject.name, n.reason) for n in evaluation.notes] == [("Nora", reason)]


@pytest.mark.parametrize(
    ("hired_days_ago", "ramp_days", "fires"),
    [(None, 90, True), (20, 90, False), (20, 0, True), (200, 90, True)],
)
def test_a_new_hire_is_measured_against_a_ramped_quota(
    warehouse: Engine, hired_days_ago: int | None, ramp_days: int, fires: bool
) -> None:
    with warehouse.begin() as conn:
        data = CompanyData(conn, NOW)
        hired = None if hired_days_ago is None else NOW.date() - timedelta(days=hired_days_ago)
        rep = data.rep("Newton", hired_on=hired)
        quota(conn, rep, 100_000)
        won(data, rep, -1, 5_000)  # 10 % of the unramped pace
    found = run(warehouse, "quota_attainment", {"ramp_days": ramp_days, "teams": False}).findings
    assert bool(found) is fires


def test_a_deal_won_2330_local_on_the_last_day_counts_in_that_quarter(warehouse: Engine) -> None:
    ny = ZoneInfo("America/New_York")
    won_at = datetime(2026, 12, 31, 23, 30, tzinfo=ny)  # 04:30 UTC on 1 January
    now = datetime(2026, 12, 31, 23, 45, tzinfo=ny).astimezone(UTC)
    with warehouse.begin() as conn:
        data = CompanyData(conn, now)
        rep = data.rep("Lastminute")
        quota(conn, rep, 100_000, (date(2026, 10, 1), date(2026, 12, 31)))
        days = (won_at - now) / timedelta(days=1)
        data.deal(
            rep,
            [("Negotiation", days - 3), ("Closed Won", days)],
            amount=80_000,
            close_dates=[(days, date(2026, 12, 31))],
        )
    with warehouse.connect() as conn:
        company = CompanySettings(timezone="America/New_York")
        at_end = standing(Warehouse(conn, company), now)
        before = standing(Warehouse(conn, company), datetime(2026, 12, 31, 23, 0, tzinfo=ny))
        in_utc = standing(Warehouse(conn, CompanySettings()), now)
    assert (at_end.period_start, at_end.reps[0].won) == (date(2026, 10, 1), 80_000)
    assert before.reps[0].won == 0  # not won yet at 23:00
    assert in_utc.period_start == date(2027, 1, 1)  # in UTC it is already next quarter...
    assert in_utc.reps == ()  # ...where the rep has no quota and no deals


def test_reopened_deleted_and_later_wins_do_not_count(warehouse: Engine) -> None:
    with warehouse.begin() as conn:
        data = CompanyData(conn, NOW)
        rep = data.rep("Rita")
        quota(conn, rep, 100_000)
        won(data, rep, -20, 50_000)  # counts
        data.deal(
            rep,
            [("Negotiation", -30), ("Closed Won", -20), ("Proposal", -5)],
            amount=30_000,
            close_dates=[(-5, date(2026, 6, 20))],
        )
        deleted = won(data, rep, -15, 40_000)
        conn.execute(opportunities_delete(deleted))
        rollups.rebuild(conn, data.source)  # as the sync would after a delete
    with warehouse.connect() as conn:
        now = standing(Warehouse(conn, CompanySettings()), NOW).reps[0]
        earlier = standing(Warehouse(conn, CompanySettings()), NOW - timedelta(days=25)).reps[0]
    assert (now.won, now.deals_won) == (50_000, 1)
    assert now.coverage == pytest.approx(30_000 / 50_000)  # the re-opened deal is open pipeline again
    assert (earlier.won, earlier.deals_won) == (0, 0)  # 25 days ago nothing was won yet


def opportunities_delete(deal_id: str):
    from sqlalchemy import update

    from models.tables import opportunities

    return update(opportunities).where(opportunities.c.id == deal_id).values(deleted_at=NOW - timedelta(days=1))


EARLY = datetime(2026, 4, 6, 18, 0, tzinfo=UTC)  # day 6 of Q2: 6 % elapsed


def test_early_in_a_period_last_quarter_speaks_when_beyond_chance(warehouse: Engine) -> None:
    with warehouse.begin() as conn:
        data = CompanyData(conn, EARLY)
        steady, slump, small = data.rep("Steady"), data.rep("Slump"), data.rep("Small")
        for rep, amount in ((steady, 400_000), (slump, 400_000), (small, 20_000)):
            quota(conn, rep, amount, Q1)
            quota(conn, rep, amount)
        for k in range(40):  # 40 deals of 10,000: the company's deal size
            won(data, steady, -80 + k * 1.5, 10_000)
        won(data, slump, -50, 10_000)
        won(data, slump, -40, 10_000)  # 5 % of 400,000: 2 deals where 40 were due
        # Small ended Q1 at 0 of 20,000: two deals due, none won; bad luck is likely.
    found = by_name(run(warehouse, "quota_attainment", {"teams": False}, now=EARLY))
    assert set(found) == {"Slump"}
    assert found["Slump"].details["basis"] == "previous_period"
    assert found["Slump"].details["p_value"] < 1e-6
    assert found["Slump"].value == pytest.approx(0.05)
    assert "ended FY2026 Q1 at 5 % of quota" in found["Slump"].explanation


# -- peer_outlier -------------------------------------------------------------------------------------
def _team(data: CompanyData, conn: Connection, won_each: dict[str, float], lost_each: int = 5) -> dict[str, str]:
    ids = {}
    for name, amount in won_each.items():
        rep = ids[name] = data.rep(name)
        quota(conn, rep, 100_000)
        if amount:
            won(data, rep, -10, amount)
        for k in range(lost_each):
            data.deal(
                rep, [("Prospecting", -30), ("Closed Lost", -20 + k)], close_dates=[(-20 + k, data.at(-20 + k).date())]
            )
    return ids


def test_peer_outliers_above_and_below_their_team(warehouse: Engine) -> None:
    with warehouse.begin() as conn:
        data = CompanyData(conn, NOW)
        _team(data, conn, {"A": 40_000, "B": 45_000, "C": 50_000, "D": 55_000, "Star": 200_000, "Zero": 0})
    evaluation = run(warehouse, "peer_outlier", {"metric": "won_amount", "per_quota": True})
    found = by_name(evaluation)
    assert set(found) == {"Star", "Zero"}
    assert (found["Star"].labels["direction"], found["Star"].severity) == ("above", "critical")
    assert found["Zero"].labels["direction"] == "below"
    assert found["Star"].details["team_median"] == pytest.approx(47_500 / (100_000 * 43.75 / 91), rel=0.02)
    assert found["Star"].unit == "zscore"
    assert found["Star"].samples[0].amount == 200_000


@pytest.mark.parametrize(
    ("params", "expected_note"),
    [({"min_sample": 50}, "only 0 of 6 reps have 50+ closed deals"), ({"min_team_size": 7}, None)],
)
def test_tiny_samples_and_small_teams_never_fire(warehouse: Engine, params: dict, expected_note: str | None) -> None:
    with warehouse.begin() as conn:
        data = CompanyData(conn, NOW)
        _team(data, conn, {"A": 40_000, "B": 45_000, "C": 50_000, "D": 55_000, "Star": 200_000, "Zero": 0})
    evaluation = run(warehouse, "peer_outlier", params)
    assert evaluation.findings == ()
    notes = [n.reason for n in evaluation.notes]
    assert notes[0].startswith(expected_note) if expected_note else notes == []


def test_a_win_rate_is_only_as_exact_as_the_reps_deal_count(warehouse: Engine) -> None:
    with warehouse.begin() as conn:
        data = CompanyData(conn, NOW)
        # Five reps at 2 of 10 won; Lucky at 6 of 10: the MAD is 0, the binomial floor holds.
        _team(data, conn, {"A": 0, "B": 0, "C": 0, "D": 0, "E": 0, "Lucky": 0}, lost_each=0)
        for name, rep_won in (("A", 2), ("B", 2), ("C", 2), ("D", 2), ("E", 2), ("Lucky", 6)):
            rep = next(r for r, n in data_reps(conn).items() if n == name)
            for k in range(10):
                stage = "Closed Won" if k < rep_won else "Closed Lost"
                data.deal(
                    rep, [("Prospecting", -40), (stage, -30 + k)], close_dates=[(-30 + k, data.at(-30 + k).date())]
                )
    evaluation = run(warehouse, "peer_outlier", {"metric": "win_rate"})
    assert evaluation.findings == ()  # z = 0.4 / sqrt(0.2 * 0.8 / 10) = 3.2 < 3.5
    loose = run(warehouse, "peer_outlier", {"metric": "win_rate"}, severity={"warn": 3.0}).findings
    assert [(f.subject.name, round(f.value, 2)) for f in loose] == [("Lucky", 3.16)]


def data_reps(conn: Connection) -> dict[str, str]:
    from sqlalchemy import select

    from models.tables import reps

    return dict(conn.execute(select(reps.c.id, reps.c.name)).all())


# -- pipeline_coverage --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("won_amount", "pipeline", "fires"),
    [
        (10_000, 50_000, "critical"),  # 21 % of pace, 0.6x coverage: both signals
        (10_000, 500_000, None),  # behind but 5.6x covered: coverage does not fire
        (50_000, 20_000, None),  # on pace: low coverage alone is not news
        (120_000, 0, None),  # quota met: nothing remains to cover
    ],
)
def test_coverage_fires_only_with_corroboration(
    warehouse: Engine, won_amount: float, pipeline: float, fires: str | None
) -> None:
    with warehouse.begin() as conn:
        data = CompanyData(conn, NOW)
        rep = data.rep("Cora")
        quota(conn, rep, 100_000)
        won(data, rep, -5, won_amount)
        if pipeline:
            open_deal(data, rep, pipeline)
    found = run(warehouse, "pipeline_coverage", {"teams": False}).findings
    assert [f.severity for f in found] == ([fires] if fires else [])
    if fires:
        assert found[0].value == pytest.approx(pipeline / (100_000 - won_amount), rel=1e-3)
        assert found[0].details["corroborated_by"][0] == "behind_pace"
        assert found[0].sample_size == 1


def test_the_packs_rule_tests_pass() -> None:
    """rules.d/tests/performance.yaml, as `rules test` runs it."""
    from rules.ruletest import format_run, run_rule_tests

    root = Path(__file__).resolve().parents[2]
    result = run_rule_tests([root / "rules.d" / "tests" / "performance.yaml"])
    assert not result.problems, result.problems
    lines = format_run(result)
    assert lines[-1].endswith("0 failed"), "\n".join(lines)


def test_a_won_deal_counts_where_its_close_date_stood_at_the_instant(warehouse: Engine) -> None:
    with warehouse.begin() as conn:
        data = CompanyData(conn, NOW)
        rep = data.rep("Moved")
        quota(conn, rep, 100_000)
        path = [("Negotiation", -30), ("Closed Won", -20)]
        closes = [(-20, data.at(-20).date()), (-2, date(2026, 7, 10))]  # pushed into Q3 two days ago
        data.deal(rep, path, amount=40_000, close_dates=closes)
    with warehouse.connect() as conn:
        now = standing(Warehouse(conn, CompanySettings()), NOW).reps
        before = standing(Warehouse(conn, CompanySettings()), NOW - timedelta(days=5)).reps
    assert [r.won for r in now] == [0]
    assert [r.won for r in before] == [40_000]


def test_standing_gives_the_digest_every_seller_and_team_with_the_rules_numbers(warehouse: Engine) -> None:
    with warehouse.begin() as conn:
        data = CompanyData(conn, NOW)
        ana, ben = data.rep("Ana"), data.rep("Ben", team="Team B")
        nora = data.rep("Nora")  # sells without a quota
        data.rep("Manager")  # neither quota nor deals: not a row
        quota(conn, ana, 100_000)
        quota(conn, ben, 200_000)
        won(data, ana, -10, 24_000)
        won(data, ben, -10, 96_000)
        open_deal(data, nora, 5_000)
        open_deal(data, ana, 50_000)
    with warehouse.connect() as conn:
        board = standing(Warehouse(conn, CompanySettings()), NOW)
        pace = run(warehouse, "quota_attainment", {"teams": False}, severity={"warn": 0.6}).findings
    assert (board.period, board.period_start, board.period_end, board.currency) == ("quarter", *Q2, "USD")
    assert board.elapsed == pytest.approx(43.75 / 91)
    rows = {r.subject.name: r for r in board.reps}
    assert list(rows) == ["Ana", "Nora", "Ben"]  # by team, then name
    assert rows["Nora"].quota is None
    assert rows["Nora"].attainment is None
    assert rows["Ana"].attainment == pytest.approx(0.24)
    assert rows["Ana"].coverage == pytest.approx(50_000 / 76_000)
    assert [f.value for f in pace] == [pytest.approx(rows["Ana"].pace, abs=1e-4)]  # the rule's number
    teams = {t.subject.name: t for t in board.teams}
    assert teams["Team A"].quota == 100_000  # Nora has no quota: not in her team's sum
    assert teams["Team B"].won == 96_000
