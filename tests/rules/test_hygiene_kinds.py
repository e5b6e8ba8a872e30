"""deal_no_activity and close_date_slipped on hand-made data: edge cases, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import Engine, literal, select, update

from models.settings import CompanySettings
from models.tables import opportunities, stages
from rules.findings import Evaluation
from rules.kinds import KINDS
from rules.model import Rule, Scope, Warehouse
from rules.stage_label import stage_label
from tests.rules.company_data import CompanyData

NOW = datetime(2026, 3, 31, 21, 30, tzinfo=UTC)  # 23:30 in Berlin on the last day of a quarter


def run(engine: Engine, kind: str, now: datetime = NOW, **rule: object) -> Evaluation:
    with engine.connect() as conn:
        company = CompanySettings(timezone="Europe/Berlin")
        return KINDS[kind].evaluate(Rule(id="r", kind=kind, **rule), Warehouse(conn, company), now)


def test_no_data_no_finding(warehouse: Engine) -> None:
    for kind in ("deal_no_activity", "close_date_slipped"):
        assert run(warehouse, kind).findings == ()


def test_idle_deals_are_grouped_per_owner_with_the_worst_first(warehouse: Engine) -> None:
    with warehouse.begin() as conn:
        data = CompanyData(conn, NOW)
        ana, ben = data.rep("Ana"), data.rep("Ben", team="Team B")
        idle = data.deal(ana, [("Prospecting", -90)], activity_days=[-80, -30], amount=5000)
        idler = data.deal(ana, [("Proposal", -90)], activity_days=[-45], amount=7000)
        never = data.deal(ana, [("Prospecting", -25)])  # no activity since creation 25 days ago
        data.deal(ana, [("Prospecting", -90)], activity_days=[-3])  # fresh
        data.deal(ana, [("Prospecting", -10)])  # young, never touched: not yet idle
        data.deal(ana, [("Prospecting", -90), ("Closed Lost", -40)], activity_days=[-60])  # closed
        data.deal(ana, [("Prospecting", -90)], activity_days=[-60], deleted_days=-1)  # deleted
        data.deal(ben, [("Prospecting", -90)], activity_days=[-2])
    (finding,) = run(warehouse, "deal_no_activity").findings
    assert finding.subject.id == ana
    assert finding.subject.team == "Team A"
    assert (finding.value, finding.sample_size, finding.severity) == (3, 5, "warn")
    assert [s.id for s in finding.samples] == [idler, idle, never]
    assert finding.samples[0].days == pytest.approx(45, abs=0.1)
    assert finding.details["flagged_amount"] == 5000 + 7000 + 10_000
    assert finding.labels == {"team": "Team A"}
    assert "Ana has 3 open deals (of 5)" in finding.explanation


def test_a_deal_deleted_after_the_instant_still_counted_then(warehouse: Engine) -> None:
    with warehouse.begin() as conn:
        data = CompanyData(conn, NOW)
        ana = data.rep("Ana")
        data.deal(ana, [("Prospecting", -90)], activity_days=[-60], deleted_days=-1)
    assert run(warehouse, "deal_no_activity").findings == ()
    (then,) = run(warehouse, "deal_no_activity", now=data.at(-2)).findings
    assert then.value == 1


def test_a_reopened_deal_counts_again(warehouse: Engine) -> None:
    with warehouse.begin() as conn:
        data = CompanyData(conn, NOW)
        ana = data.rep("Ana")
        data.deal(ana, [("Prospecting", -90), ("Closed Lost", -60), ("Qualification", -30)], activity_days=[-61])
    assert run(warehouse, "deal_no_activity", now=data.at(-45)).findings == ()  # closed then
    (finding,) = run(warehouse, "deal_no_activity").findings
    assert finding.value == 1


@pytest.mark.parametrize(
    ("params", "severity", "scope", "flagged"),
    [
        ({}, None, Scope(), 6),
        ({"min_amount": 20_000}, None, Scope(), 1),
        ({"stages": ["proposal"]}, None, Scope(), 2),
        ({"days": 50}, None, Scope(), 0),
        ({"min_deals": 7}, None, Scope(), 0),
        ({}, {"warn": 10}, Scope(), 0),
        ({}, None, Scope(exclude_teams=("Team A",)), 0),
    ],
)
def test_filters_tiers_and_scope(
    warehouse: Engine, params: dict, severity: dict | None, scope: Scope, flagged: int
) -> None:
    with warehouse.begin() as conn:
        data = CompanyData(conn, NOW)
        ana = data.rep("Ana")
        for i in range(4):
            data.deal(ana, [("Prospecting", -90)], activity_days=[-30 - i])
        data.deal(ana, [("Prospecting", -90), ("Proposal", -60)], activity_days=[-40])
        data.deal(ana, [("Prospecting", -90), ("Proposal", -60)], activity_days=[-40], amount=25_000)
    rule: dict = {"params": params, "scope": scope}
    if severity:
        rule["severity"] = severity
    findings = run(warehouse, "deal_no_activity", **rule).findings
    assert sum(f.value for f in findings) == flagged
    if flagged >= 5:
        assert findings[0].severity == "critical"


def test_close_dates_pushed_three_times_flag_the_deal(warehouse: Engine) -> None:
    with warehouse.begin() as conn:
        data = CompanyData(conn, NOW)
        ana = data.rep("Ana")
        pushed = data.deal(
            ana,
            [("Prospecting", -200)],
            close_dates=[(-150, date(2026, 1, 1)), (-100, date(2026, 2, 1)), (-50, date(2026, 5, 1))],
        )
        # two pushes and a pull-in: not a slip pattern
        data.deal(
            ana,
            [("Prospecting", -200)],
            close_dates=[(-150, date(2026, 1, 1)), (-100, date(2025, 12, 1)), (-50, date(2026, 5, 1))],
        )
        # three pushes, but closed since
        data.deal(
            ana,
            [("Prospecting", -200), ("Closed Won", -10)],
            close_dates=[(-150, date(2026, 1, 1)), (-100, date(2026, 2, 1)), (-50, date(2026, 5, 1))],
        )
    (finding,) = run(warehouse, "close_date_slipped").findings
    assert (finding.value, finding.baseline, finding.sample_size) == (1, 3, 2)
    assert [s.id for s in finding.samples] == [pushed]
    first = data.at(-200).date() + timedelta(days=60)  # the builder's first close date
    assert finding.samples[0].days == (date(2026, 5, 1) - first).days
    # as of before the third push, the deal had slipped twice only
    assert run(warehouse, "close_date_slipped", now=data.at(-60)).findings == ()
    assert run(warehouse, "close_date_slipped", params={"min_pushes": 2}, now=data.at(-60)).findings != ()
    # the owner's side of the scope, applied to the owners after grouping
    assert run(warehouse, "close_date_slipped", scope=Scope(teams=("team a",))).findings == (finding,)
    assert run(warehouse, "close_date_slipped", scope=Scope(exclude_reps=("ana",))).findings == ()


def _label_proposal(conn, pipeline: str) -> None:
    conn.execute(
        update(stages)
        .where(stages.c.source == "hubspot", stages.c.pipeline == pipeline, stages.c.api_name == "Proposal")
        .values(label=f"Decision Maker Bought-In ({pipeline})")
    )


@pytest.mark.parametrize("kind", ["deal_no_activity", "close_date_slipped"])
def test_samples_show_the_stage_label_not_the_crm_id(warehouse: Engine, kind: str) -> None:
    with warehouse.begin() as conn:
        data = CompanyData(conn, NOW, source="hubspot")  # HubSpot's stage value is an id; stages has the label
        ana = data.rep("Ana")
        for pipeline in ("default", "renewals"):  # same stage value, other pipeline: its own label
            data.pipeline(pipeline)
            _label_proposal(conn, pipeline)
            data.deal(
                ana,
                [("Proposal", -200)],
                pipeline=pipeline,
                activity_days=[-60],
                close_dates=[(-150, date(2026, 1, 1)), (-100, date(2026, 2, 1)), (-50, date(2026, 5, 1))],
            )
    findings = run(warehouse, kind).findings
    assert sorted(s.stage for f in findings for s in f.samples) == [
        "Decision Maker Bought-In (default)",
        "Decision Maker Bought-In (renewals)",
    ]


def test_a_stage_the_warehouse_does_not_know_shows_as_stored(warehouse: Engine) -> None:
    with warehouse.connect() as conn:
        got = conn.execute(select(stage_label(literal("hubspot"), literal("default"), literal("1190099")))).scalar_one()
    assert got == "1190099"


def test_a_stale_deal_is_not_judged_until_a_valid_version_arrives(warehouse: Engine) -> None:
    """A deal whose newer CRM version sits in quarantine keeps its last good row, marked stale."""
    with warehouse.begin() as conn:
        data = CompanyData(conn, NOW)
        ana = data.rep("Ana")
        idle = data.deal(ana, [("Prospecting", -90)], activity_days=[-60])
    (finding,) = run(warehouse, "deal_no_activity").findings
    assert [s.id for s in finding.samples] == [idle]
    with warehouse.begin() as conn:
        conn.execute(update(opportunities).where(opportunities.c.id == idle).values(quarantine_id=1))
    assert run(warehouse, "deal_no_activity").findings == ()
    with warehouse.begin() as conn:
        conn.execute(update(opportunities).where(opportunities.c.id == idle).values(quarantine_id=None))
    assert run(warehouse, "deal_no_activity").findings != ()


# Every deal moved out of the quarter counts, so each case isolates the condition itself.
PAST_END_ONLY = {"min_pushes": 99, "min_past_end": 1, "past_end_excess": 0, "alpha": 0.49}
START_BERLIN = datetime(2025, 12, 31, 23, 0, tzinfo=UTC)  # 2026-01-01 00:00 in Berlin: Q1 begins


def _days(instant: datetime) -> float:
    return (instant - NOW) / timedelta(days=1)


@pytest.mark.parametrize(
    ("deal", "note"),
    [
        # created 60 days before NOW: its first close date is 2026-03-31, the quarter's last day
        ({"path": [("Prospecting", -60)], "close_dates": [(-20, date(2026, 3, 25))]}, None),  # moved within
        (
            {"path": [("Prospecting", -60)], "close_dates": [(-20, date(2026, 4, 1))]},
            "moved out of FY2026 Q1: 2026-03-31 -> 2026-04-01",
        ),  # out of the quarter
        # already after the end before the quarter began, pushed further during it
        (
            {"path": [("Prospecting", -200)], "close_dates": [(-100, date(2026, 4, 10)), (-20, date(2026, 5, 1))]},
            None,
        ),
        # out, then pushed further: the latest move says nothing of the period, the history does
        (
            {"path": [("Prospecting", -60)], "close_dates": [(-20, date(2026, 4, 1)), (-10, date(2026, 5, 1))]},
            "moved out of FY2026 Q1: 2026-03-31 -> 2026-05-01",
        ),
        # out, then pulled back in: forecast again
        ({"path": [("Prospecting", -60)], "close_dates": [(-20, date(2026, 4, 15)), (-5, date(2026, 3, 30))]}, None),
        # out, in, out again: the latest move took it out
        (
            {
                "path": [("Prospecting", -60)],
                "close_dates": [(-30, date(2026, 4, 15)), (-20, date(2026, 3, 5)), (-10, date(2026, 4, 20))],
            },
            "moved out of FY2026 Q1: 2026-03-05 -> 2026-04-20",
        ),
        # out after the instant evaluated: at NOW it was still in the quarter
        ({"path": [("Prospecting", -60)], "close_dates": [(-20, date(2026, 3, 20)), (1, date(2026, 4, 10))]}, None),
        # out before the instant, further after it: as of NOW, the first move
        (
            {"path": [("Prospecting", -60)], "close_dates": [(-20, date(2026, 4, 10)), (1, date(2026, 5, 10))]},
            "moved out of FY2026 Q1: 2026-03-31 -> 2026-04-10",
        ),
        ({"path": [("Prospecting", -60), ("Closed Won", -2)], "close_dates": [(-20, date(2026, 4, 15))]}, None),
        ({"path": [("Prospecting", -60)], "close_dates": [(-20, date(2026, 4, 15))], "deleted_days": -1}, None),
        # moved at 23:30 UTC on Dec 31 = 00:30 on Jan 1 in Berlin: during the quarter
        (
            {
                "path": [("Prospecting", -200)],
                "close_dates": [(-100, date(2026, 3, 15)), (_days(START_BERLIN) + 0.5 / 24, date(2026, 4, 15))],
            },
            "moved out of FY2026 Q1: 2026-03-15 -> 2026-04-15",
        ),
        # moved at 23:30 Berlin on Dec 31: before the quarter began there
        (
            {
                "path": [("Prospecting", -200)],
                "close_dates": [(-100, date(2026, 3, 15)), (_days(START_BERLIN) - 0.5 / 24, date(2026, 4, 15))],
            },
            None,
        ),
    ],
    ids=[
        "within",
        "out",
        "already-out",
        "out-further",
        "pulled-back",
        "out-in-out",
        "out-later",
        "further-later",
        "closed",
        "deleted",
        "tz-just-in",
        "tz-just-before",
    ],
)
def test_a_deal_moved_out_of_the_quarter(warehouse: Engine, deal: dict, note: str | None) -> None:
    """The note names the date the latest move out of the quarter by NOW left from, and the date at NOW."""
    with warehouse.begin() as conn:
        data = CompanyData(conn, NOW)
        ana, bo = data.rep("Ana"), data.rep("Bo")
        deal_id = data.deal(ana, **deal)
        for _ in range(5):  # the rest of the company, whose forecast held
            data.deal(bo, [("Prospecting", -30)])
    findings = run(warehouse, "close_date_slipped", params=PAST_END_ONLY).findings
    assert [(s.id, s.note) for f in findings for s in f.samples] == ([(deal_id, note)] if note else [])
    assert run(warehouse, "close_date_slipped", params={**PAST_END_ONLY, "past_period_end": False}).findings == ()


@pytest.mark.parametrize(
    ("moved", "of", "rest_moved", "fires"),
    [
        (6, 8, 2, True),  # 75 % of Ana's deals against 10 % of the others'
        (2, 8, 2, False),  # fewer than min_past_end (3)
        (6, 8, 14, False),  # the others moved 70 %: ordinary for this company
    ],
)
def test_moved_out_deals_count_for_an_owner_only_well_above_the_rest(
    warehouse: Engine, moved: int, of: int, rest_moved: int, fires: bool
) -> None:
    out = {"close_dates": [(-20, date(2026, 4, 15))]}
    with warehouse.begin() as conn:
        data = CompanyData(conn, NOW)
        ana, bo = data.rep("Ana"), data.rep("Bo")
        for i in range(of):
            data.deal(ana, [("Prospecting", -60)], **(out if i < moved else {}))
        for i in range(20):
            data.deal(bo, [("Prospecting", -60)], **(out if i < rest_moved else {}))
    findings = run(warehouse, "close_date_slipped").findings
    assert [(f.subject.name, f.value) for f in findings] == ([("Ana", moved)] if fires else [])


def test_a_deal_both_slipped_and_moved_out_says_both(warehouse: Engine) -> None:
    with warehouse.begin() as conn:
        data = CompanyData(conn, NOW)
        ana, bo = data.rep("Ana"), data.rep("Bo")
        dates = [(-150, date(2026, 1, 10)), (-60, date(2026, 2, 10)), (-20, date(2026, 5, 1))]
        data.deal(ana, [("Prospecting", -200)], close_dates=dates)
        data.deal(bo, [("Prospecting", -30)])
    (finding,) = run(warehouse, "close_date_slipped", params=PAST_END_ONLY | {"min_pushes": 3}).findings
    (sample,) = finding.samples
    first = data.at(-200).date() + timedelta(days=60)
    assert sample.note == f"pushed 3 times, {first} -> 2026-05-01; moved out of FY2026 Q1: 2026-02-10 -> 2026-05-01"
    assert sample.days == (date(2026, 5, 1) - first).days
