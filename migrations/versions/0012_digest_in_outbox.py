"""the digest through the outbox: one row per digest period and channel (its chart a reply row)

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02 02:30:00

Existing rows are alerts: their ``digest_period`` stays null (no backfill needed).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None

KIND_BEFORE = 'firing | repeat | severity | resolved | update'
KIND_AFTER = 'firing | repeat | severity | resolved | update | digest | chart (the digest\'s, in its thread)'
PERIOD = (
    "for a scheduled digest: its scheduled time (ISO, UTC); one row per period and channel, so a second "
    "leader or a re-run queues nothing more. Null otherwise"
)


def upgrade() -> None:
    op.add_column('notifications', sa.Column('digest_period', sa.String(length=40), nullable=True, comment=PERIOD))
    op.create_index(
        op.f('ix_notifications_channel_digest_period'), 'notifications', ['channel', 'digest_period'], unique=True
    )
    if op.get_bind().dialect.supports_comments:
        op.alter_column(
            'notifications', 'kind', comment=KIND_AFTER, existing_comment=KIND_BEFORE, existing_type=sa.String(10)
        )


def downgrade() -> None:
    if op.get_bind().dialect.supports_comments:
        op.alter_column(
            'notifications', 'kind', comment=KIND_BEFORE, existing_comment=KIND_AFTER, existing_type=sa.String(10)
        )
    op.drop_index(op.f('ix_notifications_channel_digest_period'), table_name='notifications')
    with op.batch_alter_table('notifications') as batch:
        batch.drop_column('digest_period')
