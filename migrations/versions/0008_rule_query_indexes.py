"""indexes for rule queries: deals by stage_entered_at, leads by assigned_at, lead activities

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 22:35:00
"""

from __future__ import annotations

from alembic import op


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Deals whose stage changed after an as-of instant (rules/asof.py rebuilds only those).
    with op.batch_alter_table('opportunities', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_opportunities_stage_entered_at'), ['stage_entered_at'], unique=False)
    # Leads assigned in a window, whatever their owner (lead_distribution, lead_response_time).
    with op.batch_alter_table('leads', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_leads_assigned_at'), ['assigned_at'], unique=False)
    # A lead's first touch (lead_response_time).
    with op.batch_alter_table('activities', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_activities_lead_id_occurred_at'), ['lead_id', 'occurred_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('activities', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_activities_lead_id_occurred_at'))
    with op.batch_alter_table('leads', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_leads_assigned_at'))
    with op.batch_alter_table('opportunities', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_opportunities_stage_entered_at'))
