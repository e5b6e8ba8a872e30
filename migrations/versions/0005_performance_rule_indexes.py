"""indexes for the performance rules: deals closed by close date, deleted deals, stage moves per pair

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 22:55:00
"""

from __future__ import annotations

from alembic import op


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('opportunities', schema=None) as batch_op:
        # Deals won / closed in a period by their close date (quota_attainment, peer_outlier).
        batch_op.create_index(batch_op.f('ix_opportunities_is_closed_close_date'), ['is_closed', 'close_date'], unique=False)
        # Deals deleted by an instant: their stage moves are taken off the win rates.
        batch_op.create_index(batch_op.f('ix_opportunities_deleted_at'), ['deleted_at'], unique=False)
    with op.batch_alter_table('stage_changes', schema=None) as batch_op:
        # Stage moves counted per pair of stages in a time window (rules/win_rates.py).
        batch_op.create_index(
            batch_op.f('ix_stage_changes_source_from_stage_to_stage_changed_at'),
            ['source', 'from_stage', 'to_stage', 'changed_at'],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table('stage_changes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_stage_changes_source_from_stage_to_stage_changed_at'))
    with op.batch_alter_table('opportunities', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_opportunities_deleted_at'))
        batch_op.drop_index(batch_op.f('ix_opportunities_is_closed_close_date'))
