"""stage_changes.entered_at: when the deal entered the stage it left, kept by the sync

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02 02:30:00

Time in stage was a window function (LAG over each deal's changes) at every evaluation of
``stalled_stage``: a pass over all stage history. The sync now keeps it on the row; existing
warehouses get it here, in one set-based UPDATE (the same window function, once). The trailing
window index gains the column, so the history rules read the window from the index alone.
"""

from __future__ import annotations

import sqlalchemy as sa
import models.types
from alembic import op

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None

# Each change's predecessor on its deal in (changed_at, id) order; the first change: the deal's
# creation; a change whose deal is not in the warehouse: itself (no time in stage to measure).
BACKFILL = """
UPDATE stage_changes SET entered_at = previous.entered
FROM (
    SELECT sc.id AS id,
           COALESCE(LAG(sc.changed_at) OVER (PARTITION BY sc.opportunity_id ORDER BY sc.changed_at, sc.id),
                    o.created_at, sc.changed_at) AS entered
    FROM stage_changes sc LEFT JOIN opportunities o ON o.id = sc.opportunity_id
) AS previous
WHERE stage_changes.id = previous.id
"""


def upgrade() -> None:
    with op.batch_alter_table('stage_changes', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                'entered_at',
                models.types.UTCDateTime(timezone=True),
                nullable=True,
                comment="when the deal entered from_stage: the deal's previous change, or its creation (kept by the "
                "sync; null until the sync derives it)",
            )
        )
    op.execute(BACKFILL)
    with op.batch_alter_table('stage_changes', schema=None) as batch_op:
        batch_op.drop_index('ix_stage_changes_changed_at_opportunity_id_from_stage_to_stage')
        batch_op.create_index(
            'ix_stage_changes_window_moves',
            ['changed_at', 'opportunity_id', 'from_stage', 'to_stage', 'entered_at'],
            unique=False,
        )
        batch_op.create_index(
            'ix_stage_changes_underived',
            ['opportunity_id'],
            unique=False,
            sqlite_where=sa.text('entered_at IS NULL'),
            postgresql_where=sa.text('entered_at IS NULL'),
        )


def downgrade() -> None:
    with op.batch_alter_table('stage_changes', schema=None) as batch_op:
        batch_op.drop_index('ix_stage_changes_underived')
        batch_op.drop_index('ix_stage_changes_window_moves')
        batch_op.create_index(
            'ix_stage_changes_changed_at_opportunity_id_from_stage_to_stage',
            ['changed_at', 'opportunity_id', 'from_stage', 'to_stage'],
            unique=False,
        )
        batch_op.drop_column('entered_at')
