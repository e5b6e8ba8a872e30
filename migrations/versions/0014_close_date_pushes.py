"""close-date push count and latest change on the deal row, kept by the sync; in the open-deal index

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-02 14:10:00

close_date_slipped counted each open deal's pushes in close_date_changes at every evaluation: a
look-up per open deal, 4.3 s of the default pack at a million deals. The sync now keeps the count
and the instant of the latest change on the deal (as it keeps last_activity_at), and the rule reads
the history only for deals changed after the instant it evaluates. Existing warehouses get both
here, in one pass; the open-deal index is rebuilt to cover them, in owner order: the rules group
the open deals per owner, which then streams from the index instead of sorting a third of a
million deals per pass.

stage_conversion_drop's samples (the biggest deals that left a stage without moving on) read each
candidate's row for its amount and whether it is stale, and each change's row for its deal: the
history-keys index now holds both, and the index of moves per pair of stages the deal. The
performance rules read a year of closed deals (a third of a million at that scale) by close date,
each a look-up of its row: a partial index of the closed deals holds what they read. The lead rules
group a window's leads per owner: their indexes are now in owner order and hold what they read.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import models.types

revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None

OPEN_DEAL_INDEX = [
    'is_closed', 'stage', 'stage_entered_at', 'source', 'pipeline', 'owner_id', 'created_at', 'deleted_at',
    'quarantine_id', 'id', 'amount_reporting', 'close_date', 'updated_at', 'synced_at', 'last_activity_at',
]
LEAD_COHORTS = ['owner_id', 'lead_source', 'created_at', 'is_qualified', 'is_converted', 'deleted_at', 'quarantine_id']
HISTORY_KEYS = ['id', 'source', 'pipeline', 'owner_id', 'created_at', 'deleted_at']
BACKFILL = (
    "UPDATE opportunities SET "
    "close_date_pushes = (SELECT count(*) FROM close_date_changes c "
    "WHERE c.opportunity_id = opportunities.id AND c.new_date > c.old_date), "
    "close_date_changed_at = (SELECT max(c.changed_at) FROM close_date_changes c "
    "WHERE c.opportunity_id = opportunities.id)"
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
            'close_date_pushes',
            sa.Integer(),
            server_default='0',
            nullable=False,
            comment='close-date changes to a later date (kept by the sync from close_date_changes)',
        ),
    )
    op.add_column(
        'opportunities',
        sa.Column(
            'close_date_changed_at',
            models.types.UTCDateTime(timezone=True),
            nullable=True,
            comment='the latest close-date change (kept by the sync from close_date_changes); null: never changed',
        ),
    )
    op.execute(BACKFILL)
    op.drop_index('ix_opportunities_open_deals', table_name='opportunities')
    _open_deal_index(
        [
            'is_closed', 'owner_id', 'source', 'pipeline', 'stage', 'stage_entered_at', 'created_at', 'deleted_at',
            'quarantine_id', 'id', 'amount_reporting', 'close_date', 'updated_at', 'synced_at', 'last_activity_at',
            'close_date_pushes', 'close_date_changed_at',
        ]
    )
    op.drop_index('ix_opportunities_history_keys', table_name='opportunities')
    op.create_index(
        'ix_opportunities_history_keys', 'opportunities', [*HISTORY_KEYS, 'quarantine_id', 'amount_reporting']
    )
    op.drop_index('ix_opportunities_is_closed_close_date', table_name='opportunities')
    op.create_index(
        'ix_opportunities_closed_deals',
        'opportunities',
        [
            'is_closed', 'close_date', 'owner_id', 'is_won', 'amount_reporting', 'updated_at', 'synced_at',
            'stage_entered_at', 'closed_at', 'deleted_at', 'quarantine_id', 'source', 'pipeline',
        ],
        unique=False,
        sqlite_where=sa.text('is_closed = 1'),
        postgresql_where=sa.text('is_closed = true'),
    )
    op.drop_index('ix_leads_owner_id_assigned_at', table_name='leads')
    op.create_index(
        'ix_leads_owner_assignments', 'leads', ['owner_id', 'assigned_at', 'created_at', 'deleted_at', 'quarantine_id']
    )
    op.drop_index('ix_leads_cohorts', table_name='leads')
    op.create_index('ix_leads_cohorts', 'leads', LEAD_COHORTS)
    with op.batch_alter_table('stage_changes') as batch:
        batch.drop_index('ix_stage_changes_source_from_stage_to_stage_changed_at')
        batch.create_index(
            'ix_stage_changes_pair_moves', ['source', 'from_stage', 'to_stage', 'changed_at', 'opportunity_id']
        )
    if op.get_bind().dialect.name == 'sqlite':
        # SQLite plans from the statistics ANALYZE stored: without any for the new indexes it may pick one
        # that reads every row (PostgreSQL keeps its statistics per column, not per index)
        for table in ('opportunities', 'leads', 'stage_changes'):
            op.execute(f'ANALYZE {table}')


def downgrade() -> None:
    op.drop_index('ix_leads_cohorts', table_name='leads')
    op.create_index(
        'ix_leads_cohorts',
        'leads',
        ['created_at', 'owner_id', 'is_qualified', 'is_converted', 'lead_source', 'deleted_at', 'quarantine_id'],
    )
    op.drop_index('ix_leads_owner_assignments', table_name='leads')
    op.create_index('ix_leads_owner_id_assigned_at', 'leads', ['owner_id', 'assigned_at'])
    op.drop_index('ix_opportunities_closed_deals', table_name='opportunities')
    op.create_index('ix_opportunities_is_closed_close_date', 'opportunities', ['is_closed', 'close_date'], unique=False)
    with op.batch_alter_table('stage_changes') as batch:
        batch.drop_index('ix_stage_changes_pair_moves')
        batch.create_index(
            'ix_stage_changes_source_from_stage_to_stage_changed_at', ['source', 'from_stage', 'to_stage', 'changed_at']
        )
    op.drop_index('ix_opportunities_history_keys', table_name='opportunities')
    op.create_index('ix_opportunities_history_keys', 'opportunities', HISTORY_KEYS)
    op.drop_index('ix_opportunities_open_deals', table_name='opportunities')
    _open_deal_index(OPEN_DEAL_INDEX)
    with op.batch_alter_table('opportunities') as batch:
        batch.drop_column('close_date_changed_at')
        batch.drop_column('close_date_pushes')
