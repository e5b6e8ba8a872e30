"""daemon lease (one leader) and daemon instances (status)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 22:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import models.types


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'daemon_leases',
        sa.Column('name', sa.String(length=40), nullable=False, comment="what the lease grants: 'scheduler' = run the jobs"),
        sa.Column('holder', sa.String(length=200), nullable=False, comment='host:pid of the daemon holding it'),
        sa.Column('acquired_at', models.types.UTCDateTime(), nullable=False, comment='when the holder took the lease'),
        sa.Column('renewed_at', models.types.UTCDateTime(), nullable=False, comment="the holder's last renewal"),
        sa.Column('expires_at', models.types.UTCDateTime(), nullable=False, comment='another daemon may take the lease after this'),
        sa.PrimaryKeyConstraint('name', name=op.f('pk_daemon_leases')),
        comment='One leader among daemons sharing a warehouse: the holder of an unexpired lease runs the jobs.',
    )
    op.create_table(
        'daemon_instances',
        sa.Column('holder', sa.String(length=200), nullable=False, comment='host:pid of the daemon'),
        sa.Column('started_at', models.types.UTCDateTime(), nullable=False, comment='when the daemon started'),
        sa.Column('seen_at', models.types.UTCDateTime(), nullable=False, comment="the daemon's last heartbeat"),
        sa.Column('role', sa.String(length=10), nullable=False, comment='leader | standby | stopped'),
        sa.Column('state', sa.Text(), nullable=False, comment='JSON: watched files, refused changes (file:line), jobs'),
        sa.PrimaryKeyConstraint('holder', name=op.f('pk_daemon_instances')),
        comment="Each running daemon's own account of itself, for `status` (rows of stopped daemons stay).",
    )


def downgrade() -> None:
    op.drop_table('daemon_instances')
    op.drop_table('daemon_leases')
