"""A deal's state at a past instant, and a rule's scope as SQL, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import Engine, select

from models.tables import opportunities, reps
from rules.asof import OPEN_DEAL_COLUMNS, open_deals_at
from rules.model import Scope
from rules.scoping import deal_condition, rep_condition
from tests.rules.company_data import CompanyData

NOW = datetime(2026, 5, 14, 18, 0, tzinfo=UTC)


def _open_at(engine: Engine, days: float, columns: tuple[str, ...] = OPEN_DEAL_COLUMNS) -> dict[str, dict]:
    t = NOW if days == 0 else CompanyData(None, NOW).at(days)  # type: ignore[arg-type]
    with engine.connect() as conn:
        rows = conn.execute(select(open_deals_at(t, columns))).mappings().all()
    return {r["id"]: dict(r) for r in rows}


def test_open_deals_at_rebuilds_stage_close_date_and_last_activity(warehouse: Engine) -> None:
    with warehouse.begin() as conn:
        data = CompanyData(conn, NOW)
        ana = data.rep("Ana")
        steady = data.deal(ana, [("Prospecting", -50), ("Proposal", -40)], activity_days=[-45, -2])
        moved = data.deal(ana, [("Prospecting", -50), ("Qualification", -30), ("Proposal", -5)], activity_days=[-20])
        won_lately = data.deal(ana, [("Negotiation", -40), ("Closed Won", -3)])
        reopened = data.deal(ana, [("Prospecting", -60), ("Closed Lost", -30), ("Qualification", -5)])
        deleted_later = data.deal(ana, [("Prospecting", -20)], deleted_days=-2)
        data.deal(ana, [("Prospecting", -20)], deleted_days=-12)  # gone before both instants
        young = data.deal(ana, [("Prospecting", -3)])  # not yet created ten days ago
        pushed = data.deal(ana, [("Prospecting", -30)], close_dates=[(-20, date(2026, 6, 1)), (-1, date(2026, 7, 1))])

    now = _open_at(warehouse, 0)
    assert set(now) == {steady, moved, reopened, pushed, young}
    assert now[moved]["stage"] == "Proposal"

    then = _open_at(warehouse, -10)
    assert set(then) == {steady, moved, won_lately, deleted_later, pushed}  # reopened was lost ten days ago
    assert then[moved]["stage"] == "Qualification"
    assert then[moved]["stage_entered_at"] == data.at(-30)
    assert then[steady]["stage_entered_at"] == data.at(-40)
    assert then[won_lately]["stage"] == "Negotiation"
    assert then[steady]["last_activity_at"] == data.at(-45)
    assert then[moved]["last_activity_at"] == data.at(-20)
    assert then[pushed]["close_date"] == date(2026, 6, 1)
    assert now[pushed]["close_date"] == date(2026, 7, 1)


@pytest.mark.parametrize(
    ("days", "pushes"),
    [(0, 3), (-0.5, 2), (-3, 1), (-12, 1), (-25, 1), (-31, 0), (-40, 0)],
    ids=["now", "before the last push", "after the pull-in", "before it", "after the first", "before it", "early"],
)
def test_pushes_at_an_instant_count_the_later_dates_made_by_then(warehouse: Engine, days: float, pushes: int) -> None:
    """The sync's count on the row is today's; as of earlier, the pushes made after the instant do not count."""
    with warehouse.begin() as conn:
        data = CompanyData(conn, NOW)
        ana = data.rep("Ana")
        first_close = (data.at(-50) + timedelta(days=60)).date()
        moves = [
            (-30, first_close + timedelta(days=30)),  # a push
            (-20, first_close + timedelta(days=30)),  # the same date again: not a push
            (-5, first_close + timedelta(days=10)),  # pulled in: not a push
            (-1, first_close + timedelta(days=40)),  # a push
            (-0.2, first_close + timedelta(days=50)),  # a push
        ]
        deal = data.deal(ana, [("Prospecting", -50)], close_dates=moves)
        untouched = data.deal(ana, [("Prospecting", -50)])

    columns = ("id", "close_date_pushes", "close_date_changed_at")
    at = _open_at(warehouse, days, columns)
    assert at[deal]["close_date_pushes"] == pushes
    assert at[untouched]["close_date_pushes"] == 0
    assert at[untouched]["close_date_changed_at"] is None


SCOPES = [
    (Scope(), {"Ana", "Ben", "Cleo", "Dev"}),
    (Scope(teams=("team a",)), {"Ana", "Ben"}),
    (Scope(exclude_teams=("Team A",)), {"Cleo", "Dev"}),
    (Scope(reps=("ana", "cleo@example.com")), {"Ana", "Cleo"}),
    (Scope(teams=("Team B",), exclude_reps=("Dev",)), {"Cleo"}),
    (Scope(sources=("hubspot",)), {"Dev"}),
]


@pytest.mark.parametrize(("scope", "expected"), SCOPES)
def test_scope_selects_reps_by_team_name_email_and_source(warehouse: Engine, scope: Scope, expected: set) -> None:
    with warehouse.begin() as conn:
        data = CompanyData(conn, NOW)
        data.rep("Ana")
        data.rep("Ben")
        data.rep("Cleo", team="Team B")
        CompanyData(conn, NOW, source="hubspot").rep("Dev", team="Team B")
        names = set(conn.execute(select(reps.c.name).where(rep_condition(scope, reps))).scalars())
    assert names == expected


@pytest.mark.parametrize(
    ("scope", "pipelines"),
    [(Scope(), {"default", "renewals"}), (Scope(pipelines=("Renewals",)), {"renewals"}),
     (Scope(exclude_pipelines=("renewals",)), {"default"})],
)  # fmt: skip
def test_scope_selects_deals_by_pipeline(warehouse: Engine, scope: Scope, pipelines: set) -> None:
    with warehouse.begin() as conn:
        data = CompanyData(conn, NOW)
        ana = data.rep("Ana")
        data.deal(ana, [("Prospecting", -5)])
        data.deal(ana, [("Prospecting", -5)], pipeline="renewals")
        query = (
            select(opportunities.c.pipeline)
            .join(reps, reps.c.id == opportunities.c.owner_id)
            .where(deal_condition(scope, opportunities, reps))
        )
        assert set(conn.execute(query).scalars()) == pipelines


@pytest.mark.parametrize(
    ("offset_s", "stage"),
    [(-1, "Qualification"), (0, "Qualification"), (1, "Prospecting")],
)
def test_a_stage_change_at_the_instant_itself_has_happened(warehouse: Engine, offset_s: int, stage: str) -> None:
    """Boundaries: the state at T includes what happened at T, not what happened a second later."""
    with warehouse.begin() as conn:
        data = CompanyData(conn, NOW)
        ana = data.rep("Ana")
        deal = data.deal(ana, [("Prospecting", -30), ("Qualification", 0)])
    t = NOW - timedelta(seconds=offset_s)
    with warehouse.connect() as conn:
        rows = {r.id: r for r in conn.execute(select(open_deals_at(t)))}
    assert rows[deal].stage == stage
