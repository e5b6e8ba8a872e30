"""reps' lead capacity and leave period, from the quota file (lead_distribution's weights)

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02 02:30:00

Nothing to backfill: the columns hold what the quota file says, and the file is read again at
its next load (``quotas load``, or the daemon's reload); until then every rep has the default
capacity (the settings' ``[company] lead_capacity``, else 1) and no leave.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

COLUMNS = [
    ("lead_capacity", sa.Float(), "the quota file's lead_capacity: share of a team's new leads relative to 1"),
    ("leave_from", sa.Date(), "the quota file's leave_from: first day of a leave (no new leads)"),
    ("leave_until", sa.Date(), "the quota file's leave_until: last day of that leave; null: open-ended"),
]


def upgrade() -> None:
    for name, type_, comment in COLUMNS:
        op.add_column("reps", sa.Column(name, type_, nullable=True, comment=comment))


def downgrade() -> None:
    with op.batch_alter_table("reps") as batch_op:
        for name, _, _ in reversed(COLUMNS):
            batch_op.drop_column(name)
