"""a partial index of the won deals, for won amounts per rep and the company's deal sizes

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-02 18:30:00

quota_attainment and pipeline_coverage read the won deals of the quarter per rep, and
quota_attainment the won deals of the trailing year for the company's deal sizes, through the
closed-deal index (0014): every closed deal of the window, won or lost, to keep the won few
(32k of 536k in a year at a million deals). A partial index of the won deals holds what they
read.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0018'
down_revision = '0017'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        'ix_opportunities_won_deals',
        'opportunities',
        [
            'is_closed', 'is_won', 'close_date', 'owner_id', 'amount_reporting', 'updated_at', 'synced_at',
            'stage_entered_at', 'closed_at', 'deleted_at', 'quarantine_id', 'source', 'pipeline',
        ],
        unique=False,
        sqlite_where=sa.text('is_closed = 1 AND is_won = 1'),
        postgresql_where=sa.text('is_closed = true AND is_won = true'),
    )
    if op.get_bind().dialect.name == 'sqlite':
        op.execute('ANALYZE opportunities')  # statistics for the new index (see 0014)


def downgrade() -> None:
    op.drop_index('ix_opportunities_won_deals', table_name='opportunities')
