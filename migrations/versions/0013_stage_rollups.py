"""per-day stage rollups (stage_move_days, stage_stay_days), kept by the sync; open-deal and lead indexes

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02 06:30:00

The history rules (stalled_stage's time-in-stage limits, stage_conversion_drop, the stage win
rates) read every stage change of a trailing year at each evaluation: linear in the history,
seconds at a million deals. The sync now keeps per-day counts of them (sync/rollups.py); existing
warehouses get them here, in one grouped pass over stage_changes (the same SQL as the sync's).

The open-deal rules read a third of a million open deals at that scale, each a look-up of its row
through the (is_closed, stage, stage_entered_at) index; a partial index of the open deals holding
the columns they read answers from the index alone; so does one of the leads for the cohorts of
lead_qualification_rate; and a deal's close-date changes with their dates, for close_date_slipped.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None

COUNTED = (
    "FROM stage_changes sc JOIN opportunities o ON o.id = sc.opportunity_id "
    "WHERE sc.from_stage IS NOT NULL AND o.deleted_at IS NULL AND o.quarantine_id IS NULL"
)
DAY = {'sqlite': "date(sc.changed_at)", 'postgresql': "CAST(timezone('UTC', sc.changed_at) AS DATE)"}
SPENT = {
    'sqlite': "CAST(julianday(sc.changed_at) - julianday(sc.entered_at) AS INTEGER)",
    'postgresql': "CAST(FLOOR(EXTRACT(EPOCH FROM (sc.changed_at) - (sc.entered_at)) / 86400.0) AS INTEGER)",
}


OPEN_DEAL_INDEX = [
    'is_closed', 'stage', 'stage_entered_at', 'source', 'pipeline', 'owner_id', 'created_at', 'deleted_at',
    'quarantine_id', 'id', 'amount_reporting', 'close_date', 'updated_at', 'synced_at', 'last_activity_at',
]


LEAD_COHORTS = ['created_at', 'owner_id', 'is_qualified', 'is_converted', 'lead_source', 'deleted_at', 'quarantine_id']


def upgrade() -> None:
    op.create_index('ix_leads_cohorts', 'leads', LEAD_COHORTS, unique=False)
    with op.batch_alter_table('close_date_changes') as batch:
        batch.drop_index('ix_close_date_changes_opportunity_id_changed_at')
        batch.create_index(
            'ix_close_date_changes_deal_dates',
            ['opportunity_id', 'changed_at', 'old_date', 'new_date'],
            unique=False,
        )
    op.create_index(
        'ix_opportunities_open_deals',
        'opportunities',
        OPEN_DEAL_INDEX,
        unique=False,
        sqlite_where=sa.text('is_closed = 0'),
        postgresql_where=sa.text('is_closed = false'),
    )
    op.create_table(
        'stage_move_days',
        sa.Column('day', sa.Date(), nullable=False, comment='UTC day of the moves'),
        sa.Column('source', sa.String(length=20), nullable=False, comment='CRM'),
        sa.Column('pipeline', sa.String(length=100), nullable=False, comment="the deal's pipeline"),
        sa.Column('from_stage', sa.String(length=255), nullable=False, comment='stages.api_name left'),
        sa.Column('to_stage', sa.String(length=255), nullable=False, comment='stages.api_name entered'),
        sa.Column('moves', sa.Integer(), nullable=False, comment='stage changes from_stage -> to_stage that day'),
        comment='Stage moves per UTC day (kept by the sync; rebuilt from stage_changes for every day a sync touched).',
    )
    op.create_index(
        'ix_stage_move_days_window',
        'stage_move_days',
        ['day', 'source', 'pipeline', 'from_stage', 'to_stage', 'moves'],
        unique=False,
    )
    op.create_table(
        'stage_stay_days',
        sa.Column('day', sa.Date(), nullable=False, comment='UTC day the deals left the stage'),
        sa.Column('source', sa.String(length=20), nullable=False, comment='CRM'),
        sa.Column('pipeline', sa.String(length=100), nullable=False, comment="the deal's pipeline"),
        sa.Column('stage', sa.String(length=255), nullable=False, comment='stages.api_name left (from_stage)'),
        sa.Column('days_in_stage', sa.Integer(), nullable=False, comment='whole days from entered_at to changed_at'),
        sa.Column(
            'exits', sa.Integer(), nullable=False, comment='stage changes out of the stage that day after that stay'
        ),
        comment='Time in stage of the deals that left it, per UTC day (kept by the sync like stage_move_days).',
    )
    op.create_index(
        'ix_stage_stay_days_window',
        'stage_stay_days',
        ['day', 'source', 'pipeline', 'stage', 'days_in_stage', 'exits'],
        unique=False,
    )
    dialect = op.get_bind().dialect.name
    day, spent = DAY[dialect], SPENT[dialect]
    op.execute(
        f"INSERT INTO stage_move_days (day, source, pipeline, from_stage, to_stage, moves) "
        f"SELECT {day}, o.source, o.pipeline, sc.from_stage, sc.to_stage, count(*) {COUNTED} "
        f"GROUP BY {day}, o.source, o.pipeline, sc.from_stage, sc.to_stage"
    )
    op.execute(
        f"INSERT INTO stage_stay_days (day, source, pipeline, stage, days_in_stage, exits) "
        f"SELECT {day}, o.source, o.pipeline, sc.from_stage, {spent}, count(*) {COUNTED} "
        f"AND sc.entered_at IS NOT NULL GROUP BY {day}, o.source, o.pipeline, sc.from_stage, {spent}"
    )


def downgrade() -> None:
    op.drop_index('ix_leads_cohorts', table_name='leads')
    with op.batch_alter_table('close_date_changes') as batch:
        batch.drop_index('ix_close_date_changes_deal_dates')
        batch.create_index('ix_close_date_changes_opportunity_id_changed_at', ['opportunity_id', 'changed_at'])
    op.drop_index('ix_opportunities_open_deals', table_name='opportunities')
    op.drop_index(
        'ix_stage_stay_days_window', table_name='stage_stay_days'
    )
    op.drop_table('stage_stay_days')
    op.drop_index(
        'ix_stage_move_days_window', table_name='stage_move_days'
    )
    op.drop_table('stage_move_days')
