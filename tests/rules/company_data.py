"""Compact warehouse rows for rule unit tests: reps, a pipeline, deals by stage path, leads.

Times are days relative to ``now`` (negative: in the past), so a test reads like the story
it tells ("entered Proposal 90 days ago"). Rows are written the way a sync leaves them,
derived columns included (``stage_entered_at``, ``last_activity_at``), Salesforce-style:
a deal's first stage is its stage at creation, later moves are stage changes.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, insert

from models.tables import activities, close_date_changes, leads, opportunities, reps, stage_changes, stages
from sync import rollups
from sync.close_dates import summarise

STAGES = (  # api name, closed, won
    ("Prospecting", False, False),
    ("Qualification", False, False),
    ("Proposal", False, False),
    ("Negotiation", False, False),
    ("Closed Won", True, True),
    ("Closed Lost", True, False),
)


class CompanyData:
    """Writes rows into a migrated warehouse through ``conn``; ``now`` anchors relative days."""

    def __init__(self, conn: Connection, now: datetime, source: str = "salesforce") -> None:
        self.conn = conn
        self.now = now
        self.source = source
        self._ids = itertools.count(1)
        self._stages_written: set[tuple[str, str]] = set()

    def at(self, days: float) -> datetime:
        return self.now + timedelta(days=days)

    def _id(self, prefix: str) -> str:
        return f"{self.source}:{prefix}{next(self._ids):06d}"

    def pipeline(self, pipeline: str = "default") -> None:
        if (self.source, pipeline) in self._stages_written:
            return
        self._stages_written.add((self.source, pipeline))
        rows = []
        for order, (name, closed, won) in enumerate(STAGES):
            rows.append(
                {
                    "id": f"{self.source}:st-{pipeline}-{order}",
                    "source": self.source,
                    "external_id": f"st-{pipeline}-{order}",
                    "pipeline": pipeline,
                    "api_name": name,
                    "label": name,
                    "sort_order": order,
                    "probability": 1.0 if won else 0.1 * (order + 1) * (not closed),
                    "is_closed": closed,
                    "is_won": won,
                    "is_active": True,
                    "synced_at": self.now,
                }
            )
        self.conn.execute(insert(stages), rows)

    def rep(
        self, name: str, team: str = "Team A", *, active: bool = True, hired_on: date | None = None, email: str = ""
    ) -> str:
        rep_id = self._id("rep")
        self.conn.execute(
            insert(reps).values(
                id=rep_id,
                source=self.source,
                external_id=rep_id.split(":")[1],
                email=email or f"{name.lower().replace(' ', '.')}@example.com",
                name=name,
                team_id=f"{self.source}:team-{team}",
                team=team,
                is_active=active,
                hired_on=hired_on,
                synced_at=self.now,
            )
        )
        return rep_id

    def deal(
        self,
        owner: str,
        path: Sequence[tuple[str, float]],
        *,
        amount: float = 10_000,
        pipeline: str = "default",
        close_dates: Sequence[tuple[float, date]] = (),
        activity_days: Sequence[float] = (),
        deleted_days: float | None = None,
        name: str = "",
    ) -> str:
        """A deal created in ``path[0]`` stage at ``path[0]`` days, then moved along ``path``.

        ``close_dates``: (days, new close date) changes after a first close date 60 days after creation.
        """
        self.pipeline(pipeline)
        deal_id = self._id("opp")
        closed_by_name = {n: (c, w) for n, c, w in STAGES}
        stage, entered = path[-1][0], self.at(path[-1][1])
        is_closed, is_won = closed_by_name[stage]
        created = self.at(path[0][1])
        first_close = created.date() + timedelta(days=60)
        close = close_dates[-1][1] if close_dates else first_close
        updated = max([entered, *(self.at(d) for d, _ in close_dates)])
        last_activity = self.at(max(activity_days)) if activity_days else None
        self.conn.execute(
            insert(opportunities).values(
                id=deal_id,
                source=self.source,
                external_id=deal_id.split(":")[1],
                name=name or f"Deal {deal_id}",
                owner_id=owner,
                amount=amount,
                currency="USD",
                amount_reporting=amount,
                pipeline=pipeline,
                stage=stage,
                is_closed=is_closed,
                is_won=is_won,
                created_at=created,
                close_date=close,
                closed_at=entered if is_closed else None,
                stage_entered_at=entered,
                last_activity_at=last_activity,
                crm_url=f"https://crm.example/{deal_id}",
                updated_at=updated,
                synced_at=self.now,
                deleted_at=None if deleted_days is None else self.at(deleted_days),
            )
        )
        changes = [
            self._row(deal_id, "sc", from_stage=a, to_stage=b, changed_at=self.at(d), entered_at=self.at(entered_a))
            for (a, entered_a), (b, d) in itertools.pairwise(path)
        ]
        if changes:
            self.conn.execute(insert(stage_changes), changes)
            days = [c["changed_at"].date() for c in changes]
            rollups.rebuild(self.conn, self.source, min(days), max(days))  # as the sync keeps them
        old, moves = first_close, []
        for days, new in close_dates:
            moves.append(self._row(deal_id, "cd", old_date=old, new_date=new, changed_at=self.at(days)))
            old = new
        if moves:
            self.conn.execute(insert(close_date_changes), moves)
            summarise(self.conn, opportunities.c.id == deal_id)  # as the sync keeps it
        for days in activity_days:
            self.activity(owner, days, opportunity_id=deal_id)
        return deal_id

    def _row(self, deal_id: str, prefix: str, **values: Any) -> dict[str, Any]:
        row_id = self._id(prefix)
        return {
            "id": row_id,
            "source": self.source,
            "external_id": row_id.split(":")[1],
            "opportunity_id": deal_id,
            "synced_at": self.now,
            **values,
        }

    def activity(self, rep: str, days: float, *, opportunity_id: str | None = None, lead_id: str | None = None) -> str:
        activity_id = self._id("act")
        self.conn.execute(
            insert(activities).values(
                id=activity_id,
                source=self.source,
                external_id=activity_id.split(":")[1],
                type="call",
                rep_id=rep,
                opportunity_id=opportunity_id,
                lead_id=lead_id,
                occurred_at=self.at(days),
                synced_at=self.now,
            )
        )
        return activity_id

    def lead(
        self,
        owner: str | None,
        created_days: float,
        *,
        assigned_days: float | None = None,
        qualified: bool = False,
        lead_source: str = "Web",
        activity_days: Sequence[float] = (),
        deleted_days: float | None = None,
    ) -> str:
        lead_id = self._id("lead")
        self.conn.execute(
            insert(leads).values(
                id=lead_id,
                source=self.source,
                external_id=lead_id.split(":")[1],
                name=f"Lead {lead_id}",
                owner_id=owner,
                status="Qualified" if qualified else "Open",
                lead_source=lead_source,
                is_qualified=qualified,
                is_converted=False,
                created_at=self.at(created_days),
                assigned_at=self.at(created_days if assigned_days is None else assigned_days),
                synced_at=self.now,
                deleted_at=None if deleted_days is None else self.at(deleted_days),
            )
        )
        for days in activity_days:
            self.activity(owner or "", days, lead_id=lead_id)
        return lead_id
