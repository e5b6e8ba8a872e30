"""Which days a sync's rollup refresh rebuilds: those that may count differently, not every day of a touched deal."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from sqlalchemy import Engine, insert, select, update

from models.tables import opportunities, stage_changes, stage_move_days
from sync import rollups
from tests.sync.company_checks import stale_stage_rollups

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _deal(conn, deal_id: str, at: datetime, changes: list[tuple[int, str, str]]) -> None:
    conn.execute(
        insert(opportunities).values(
            id=deal_id, source="salesforce", external_id=deal_id, pipeline="default", stage=changes[-1][2],
            is_closed=False, is_won=False, created_at=T0 - timedelta(days=1), synced_at=at,
        )
    )  # fmt: skip
    previous = T0 - timedelta(days=1)
    for n, (day, before, after) in enumerate(changes):
        changed = T0 + timedelta(days=day)
        conn.execute(
            insert(stage_changes).values(
                id=f"{deal_id}-{n}", source="salesforce", external_id=f"{deal_id}-{n}", opportunity_id=deal_id,
                from_stage=before, to_stage=after, changed_at=changed, entered_at=previous, synced_at=at,
            )
        )  # fmt: skip
        previous = changed


def _moves(conn) -> int:
    return sum(conn.execute(select(stage_move_days.c.moves)).scalars())


def test_a_deal_rewritten_for_its_amount_rebuilds_no_day_but_a_deletion_rebuilds_its_days(warehouse: Engine) -> None:
    path = [(0, "Prospecting", "Qualification"), (10, "Qualification", "Proposal"), (20, "Proposal", "Negotiation")]
    with warehouse.begin() as conn:
        _deal(conn, "salesforce:a", T0, path)
        _deal(conn, "salesforce:b", T0, path[:2])
        assert rollups.refresh(conn, "salesforce", T0) == 3  # first sync: every day with a change
        assert _moves(conn) == 5

        later = T0 + timedelta(days=30)  # a: its amount changed in the CRM; the row is written again
        conn.execute(
            update(opportunities).where(opportunities.c.id == "salesforce:a").values(amount=5, synced_at=later)
        )
        assert rollups.refresh(conn, "salesforce", later) == 0  # its days count the same

        later += timedelta(days=1)  # a new change of b: its day only
        conn.execute(
            insert(stage_changes).values(
                id="salesforce:b-2", source="salesforce", external_id="b-2", opportunity_id="salesforce:b",
                from_stage="Proposal", to_stage="Closed Lost", changed_at=T0 + timedelta(days=25),
                entered_at=T0 + timedelta(days=10), synced_at=later,
            )
        )  # fmt: skip
        assert rollups.refresh(conn, "salesforce", later) == 1
        assert _moves(conn) == 6

        later += timedelta(days=1)  # a deleted: every day of its changes counts one fewer
        conn.execute(
            update(opportunities).where(opportunities.c.id == "salesforce:a").values(deleted_at=later, synced_at=later)
        )
        assert rollups.refresh(conn, "salesforce", later) == 3
        assert _moves(conn) == 3

        later += timedelta(days=1)  # b moved to another pipeline: its days, under the new pipeline
        conn.execute(
            update(opportunities)
            .where(opportunities.c.id == "salesforce:b")
            .values(pipeline="renewals", synced_at=later)
        )
        assert rollups.refresh(conn, "salesforce", later) == 3
        pipelines = set(conn.execute(select(stage_move_days.c.pipeline)).scalars())
        assert pipelines == {"renewals"}

        # and the days rebuilt for the entered_at the derive moved (a change synced late), as told
        assert rollups.refresh(conn, "salesforce", later + timedelta(days=1), {date(2026, 3, 11)}) == 1
    assert stale_stage_rollups(warehouse, "salesforce") is None
