"""A deal's close-date history summed up on its row: how often the date was pushed out, and its latest move.

close_date_slipped judges every open deal at each evaluation; counting each one's pushes in
``close_date_changes`` then cost a look-up per deal (4.3 s of the default pack at a million
deals), and so did finding whether a change moved the date out of the current period (0.4 s:
for most such deals the latest change did, which the date it moved from shows). The sync keeps
these on the row, as it keeps ``last_activity_at``, and the rules read the history only for the
deals whose close date moved after the instant they evaluate (rules/asof.py) or whose latest
move does not answer.
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, Connection, func, select, update

from models.tables import close_date_changes, opportunities


def summarise(conn: Connection, deals: ColumnElement[bool]) -> None:
    """Set ``close_date_pushes`` (changes to a later date), ``close_date_changed_at`` (the latest change) and
    ``close_date_previous`` (the date that change moved from) on the deals matching ``deals``, from all their
    close-date changes. The latest is the last in (changed_at, id) order, as rules/asof.py reads the history."""
    o, cdc = opportunities, close_date_changes
    mine = cdc.c.opportunity_id == o.c.id
    pushes = select(func.count()).where(mine, cdc.c.new_date > cdc.c.old_date).scalar_subquery()
    latest = select(func.max(cdc.c.changed_at)).where(mine).scalar_subquery()
    previous = (
        select(cdc.c.old_date).where(mine).order_by(cdc.c.changed_at.desc(), cdc.c.id.desc()).limit(1).scalar_subquery()
    )
    conn.execute(
        update(o)
        .where(deals)
        .values(close_date_pushes=pushes, close_date_changed_at=latest, close_date_previous=previous)
    )
