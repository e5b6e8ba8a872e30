"""the close date before the latest change on the deal row, kept by the sync; in the open-deal index

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-02 17:20:00

close_date_slipped asks, of every open deal whose close date now lies after the period and changed
during it, whether a change moved it out of the period: a look-up in close_date_changes per deal,
188k of them at a million deals (0.4 s of the default pack). For about two deals in three the latest
change did, which the date it moved from shows; the sync now keeps that date on the row, and the
history is read only for the rest. Existing warehouses get it here; the open-deal index is rebuilt
to hold it. On PostgreSQL the backfill rewrites every deal row with a close-date change (nearly
all): until (auto)vacuum marks the pages all-visible again the open-deal index cannot answer alone
(README, upgrades). VACUUM cannot run in the upgrade's transaction.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0016'
down_revision = '0015'
branch_labels = None
depends_on = None

OPEN_DEAL_INDEX = [
    'is_closed', 'owner_id', 'source', 'pipeline', 'stage', 'stage_entered_at', 'created_at', 'deleted_at',
    'quarantine_id', 'id', 'amount_reporting', 'close_date', 'updated_at', 'synced_at', 'last_activity_at',
    'close_date_pushes', 'close_date_changed_at',
]
BACKFILL = (
    "UPDATE opportunities SET close_date_previous = (SELECT c.old_date FROM close_date_changes c "
    "WHERE c.opportunity_id = opportunities.id ORDER BY c.changed_at DESC, c.id DESC LIMIT 1) "
    "WHERE close_date_changed_at IS NOT NULL"
)


def _open_deal_index(columns: list[str]) -> None:
    op.create_index(
        'ix_opportunities_open_deals',
        'opportunities',
        columns,
        unique=False,
        sqlite_where=sa.text('is_closed = 0'),
        postgresql_where=sa.text('is_closed = false'),
    )


def upgrade() -> None:
    op.add_column(
        'opportunities',
        sa.Column(
            'close_date_previous',
            sa.Date(),
            nullable=True,
            comment='the close date before the latest change (kept by the sync from close_date_changes); null: '
            'never changed',
        ),
    )
    op.execute(BACKFILL)
    op.drop_index('ix_opportunities_open_deals', table_name='opportunities')
    _open_deal_index([*OPEN_DEAL_INDEX, 'close_date_previous'])
    if op.get_bind().dialect.name == 'sqlite':
        op.execute('ANALYZE opportunities')  # statistics for the rebuilt index (see 0014)


def downgrade() -> None:
    op.drop_index('ix_opportunities_open_deals', table_name='opportunities')
    _open_deal_index(OPEN_DEAL_INDEX)
    with op.batch_alter_table('opportunities') as batch:
        batch.drop_column('close_date_previous')
