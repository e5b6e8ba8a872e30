"""covering indexes for the history rules: stage changes in deal order and in time order, deal keys

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01 23:50:00
"""

from __future__ import annotations

from alembic import op


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('stage_changes', schema=None) as batch_op:
        # Each change with the one before it on the same deal (stalled_stage's time in stage, the
        # stage win rates): the window function reads the index in its order, no sort, no row lookups.
        batch_op.create_index(
            batch_op.f('ix_stage_changes_opportunity_id_changed_at_id_from_stage'),
            ['opportunity_id', 'changed_at', 'id', 'from_stage'],
            unique=False,
        )
        # The moves of a trailing window (stage_conversion_drop), answered from the index alone.
        batch_op.create_index(
            batch_op.f('ix_stage_changes_changed_at_opportunity_id_from_stage_to_stage'),
            ['changed_at', 'opportunity_id', 'from_stage', 'to_stage'],
            unique=False,
        )
    with op.batch_alter_table('opportunities', schema=None) as batch_op:
        # What a stage change needs of its deal (grouping keys, scope, existence), without the wide row.
        batch_op.create_index(
            'ix_opportunities_history_keys',
            ['id', 'source', 'pipeline', 'owner_id', 'created_at', 'deleted_at'],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table('opportunities', schema=None) as batch_op:
        batch_op.drop_index('ix_opportunities_history_keys')
    with op.batch_alter_table('stage_changes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_stage_changes_changed_at_opportunity_id_from_stage_to_stage'))
        batch_op.drop_index(batch_op.f('ix_stage_changes_opportunity_id_changed_at_id_from_stage'))
