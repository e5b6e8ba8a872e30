"""comment every column; file quotas win over the CRM's; reps' hire dates

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 22:45:19

Comments are what an analyst reads in ``\\d+``; SQLite keeps none, so there they are skipped.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# (table, column, comment, the comment before this revision)
COMMENTS = [
    ('activities', 'subject', 'subject line as in the CRM, cut to 1,000 characters', None),
    ('activities', 'occurred_at', 'when the call, meeting or email happened (a task: its due or completion time)', None),
    ('activities', 'created_at', 'when the activity was created in the CRM', None),
    ('alerts', 'id', 'surrogate key; notifications.alert_id', None),
    ('alerts', 'rule_id', 'id of the rule that raised it', None),
    ('alerts', 'severity', 'severity tier of the latest evaluation', None),
    ('alerts', 'summary', 'one-line text of the latest finding', None),
    ('alerts', 'first_fired_at', 'when the alert first fired (this episode)', None),
    ('alerts', 'last_fired_at', 'latest evaluation that found it', None),
    ('alerts', 'last_notified_at', 'latest notification written to the outbox', None),
    ('alerts', 'resolved_at', 'when it stopped firing; null while firing', None),
    ('alerts', 'notify_count', 'notifications written for this alert', None),
    ('close_date_changes', 'old_date', 'expected close date before the change', None),
    ('close_date_changes', 'new_date', 'expected close date after the change (later: a push)', None),
    ('close_date_changes', 'changed_at', 'when the change was made in the CRM', None),
    ('close_date_changes', 'synced_at', 'when salespulse last wrote this row', None),
    ('leads', 'name', "person's name, cut to 1,000 characters", None),
    ('leads', 'company', 'company name, cut to 1,000 characters', None),
    ('leads', 'email', 'lower-cased email', None),
    ('leads', 'is_qualified', 'qualified (status or lifecycle stage), or converted', None),
    ('leads', 'is_converted', 'converted into a deal / customer', None),
    ('leads', 'converted_at', 'when it was converted', None),
    ('leads', 'created_at', 'when the lead was created in the CRM', None),
    ('opportunities', 'name', 'deal name, cut to 1,000 characters', None),
    ('opportunities', 'pipeline', "pipeline id ('default' for Salesforce)", None),
    ('opportunities', 'is_closed', 'won or lost', None),
    ('opportunities', 'is_won', 'closed and won', None),
    ('opportunities', 'created_at', 'when the deal was created in the CRM', None),
    ('opportunities', 'closed_at', 'when the deal closed; null while open', None),
    ('opportunities', 'last_activity_at', 'latest activity on the deal (kept by the sync from activities)', None),
    ('quarantine', 'id', 'surrogate key', None),
    ('quarantine', 'source', 'CRM the record came from', None),
    ('quarantine', 'stream', 'sync stream that read it', None),
    ('quarantine', 'external_id', "the CRM's own record id", None),
    ('quarantine', 'reason', 'why it was refused, field by field', None),
    ('quarantine', 'first_seen_at', 'first sync that refused it', None),
    ('quarantine', 'last_seen_at', 'latest sync that refused it', None),
    ('quarantine', 'times_seen', 'syncs that refused it', None),
    ('quotas', 'id', 'surrogate key', None),
    ('quotas', 'period_start', 'first day of the period', None),
    ('quotas', 'amount', "in the quota's currency", None),
    ('quotas', 'currency', 'ISO 4217', None),
    ('quotas', 'amount_reporting', 'amount converted to the reporting currency', None),
    ('quotas', 'synced_at', 'when salespulse last wrote this row', None),
    ('reps', 'name', 'full name', None),
    ('reps', 'title', 'job title', None),
    ('reps', 'is_active', 'false for deactivated users and archived owners', None),
    ('reps', 'created_at', 'when the user or owner was created in the CRM', None),
    ('silences', 'id', 'surrogate key', None),
    ('silences', 'rule_id', 'rule whose alerts are muted', None),
    ('silences', 'reason', 'why, as given by whoever muted it', None),
    ('silences', 'created_by', 'who muted it', None),
    ('silences', 'created_at', 'when the silence was added', None),
    ('silences', 'ends_at', 'when it stops muting', None),
    ('stage_changes', 'changed_at', 'when the deal moved, in the CRM', None),
    ('stage_changes', 'synced_at', 'when salespulse last wrote this row', None),
    ('stages', 'label', 'name as shown in the CRM', None),
    ('stages', 'is_closed', 'deals here are closed', None),
    ('stages', 'is_won', 'deals here are won', None),
    ('stages', 'is_active', 'false for stages retired in the CRM', None),
    ('sync_locks', 'source', 'CRM the lock is for', None),
    ('sync_locks', 'acquired_at', 'when the running sync took the lock', None),
    ('sync_locks', 'heartbeat_at', 'latest sign of life: per committed batch and during waits', None),
    ('sync_runs', 'id', 'surrogate key', None),
    ('sync_runs', 'source', 'CRM synced', None),
    ('sync_runs', 'stream', 'stream synced', None),
    ('sync_runs', 'started_at', "when the stream's run started", None),
    ('sync_runs', 'finished_at', 'when it ended; null while running', None),
    ('sync_runs', 'records_read', 'records read from the CRM (boundary repeats excluded)', None),
    ('sync_runs', 'records_written', 'rows upserted', None),
    ('sync_runs', 'records_quarantined', 'records refused into quarantine', None),
    ('sync_runs', 'records_deleted', 'rows marked deleted', None),
    ('sync_runs', 'duration_s', 'seconds the run took', None),
    ('sync_runs', 'cursor_before', 'stored cursor (JSON) when the run started', None),
    ('sync_runs', 'cursor_after', 'cursor (JSON) the run left', None),
    ('sync_state', 'source', 'CRM', None),
    ('sync_state', 'stream', 'sync stream', None),
    ('sync_state', 'updated_at', 'when the cursor was last stored', None),
    ('notifications', 'id', 'surrogate key', None),
    ('notifications', 'alert_id', 'alerts.id', None),
    ('notifications', 'channel', 'Slack channel name or id it goes to', None),
    ('notifications', 'attempts', 'sends tried', None),
    ('notifications', 'next_attempt_at', 'when the next send may be tried', None),
    ('notifications', 'created_at', 'when it was written to the outbox', None),
    ('notifications', 'sent_at', 'when Slack said ok; null until then', None),
    ('notifications', 'slack_channel_id', 'channel id Slack answered with', None),
    ('notifications', 'last_error', 'reason of the latest failed send', None),
    ('sync_runs', 'status', 'running | ok | degraded | failed | interrupted | skipped', 'running | ok | failed'),
    ('sync_runs', 'error', 'one-line reason when status is not ok', 'one-line reason when status is failed'),
]
IS_EFFECTIVE = (
    "false for a Salesforce quota whose rep has a quota-file quota overlapping its period (the file wins); "
    "quota checks read effective quotas only"
)


def upgrade() -> None:
    op.add_column(
        "quotas",
        sa.Column("is_effective", sa.Boolean(), server_default=sa.true(), nullable=False, comment=IS_EFFECTIVE),
    )
    op.add_column(
        "reps",
        sa.Column(
            "hired_on_crm",
            sa.Date(),
            nullable=True,
            comment="the CRM's: a Hire_Date__c user field, else the user or owner creation day",
        ),
    )
    op.add_column(
        "reps",
        sa.Column("hired_on_file", sa.Date(), nullable=True, comment="the quota file's hired_on column for this rep, if any"),
    )
    if op.get_bind().dialect.supports_comments:
        op.alter_column(
            "reps",
            "hired_on",
            comment="start date: hired_on_file when the quota file gives one, else hired_on_crm",
            existing_type=sa.Date(),
        )
        for table, column, comment, before in COMMENTS:
            op.alter_column(table, column, comment=comment, existing_comment=before)


def downgrade() -> None:
    if op.get_bind().dialect.supports_comments:
        for table, column, comment, before in COMMENTS:
            op.alter_column(table, column, comment=before, existing_comment=comment)
        op.alter_column("reps", "hired_on", comment=None, existing_type=sa.Date())
    with op.batch_alter_table("reps") as batch:
        batch.drop_column("hired_on_file")
        batch.drop_column("hired_on_crm")
    with op.batch_alter_table("quotas") as batch:
        batch.drop_column("is_effective")
