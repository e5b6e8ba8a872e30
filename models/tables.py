"""The warehouse schema: the tables analysts query and every later step reads.

Conventions (stable; analysts rely on them):
- CRM data tables have a text primary key ``id = '<source>:<crm id>'`` (for example
  ``salesforce:006000000000123AAA`` or ``hubspot:1234``), plus ``source`` and
  ``external_id`` (the CRM's own id). The key is stable across re-syncs and rebuilds, so
  references (``owner_id``, ``opportunity_id``...) can be computed without a lookup, and
  it makes (source, external_id) unique without another index to maintain.
- Every instant is UTC (``timestamptz`` on PostgreSQL); business dates (close date, quota
  periods) are plain dates.
- ``updated_at`` is the CRM's own modification stamp; ``synced_at`` when salespulse last
  wrote the row; ``deleted_at`` is set when the record was deleted or archived in the CRM
  (rows are soft-deleted, never removed).
- Amounts are kept in the record's currency (``amount``, ``currency``) and converted to the
  reporting currency from settings (``amount_reporting``).
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    Date,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from models.types import UTCDateTime

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)

Money = Numeric(18, 2)


def _crm_columns() -> list[Column]:
    """The identity and bookkeeping columns every CRM data table has."""
    return [
        Column("id", String(80), primary_key=True, comment="'<source>:<external_id>', stable across re-syncs"),
        Column("source", String(20), nullable=False, comment="CRM the row came from: salesforce | hubspot"),
        Column("external_id", String(64), nullable=False, comment="the CRM's own record id"),
    ]


def _tail_columns(*, deletable: bool = True) -> list[Column]:
    cols = [
        Column("updated_at", UTCDateTime(), comment="the CRM's last-modified stamp"),
        Column("synced_at", UTCDateTime(), nullable=False, comment="when salespulse last wrote this row"),
    ]
    if deletable:
        cols.append(Column("deleted_at", UTCDateTime(), comment="set when deleted/archived in the CRM"))
    return cols


reps = Table(
    "reps",
    metadata,
    *_crm_columns(),
    Column("email", String(320), comment="lower-cased; how quota files name a rep"),
    Column("name", String(500), nullable=False),
    Column("title", String(255)),
    Column("team_id", String(80), comment="'<source>:<team id>' (Salesforce role, HubSpot team)"),
    Column("team", String(255), comment="team name as shown in the CRM"),
    Column("manager_id", String(80), comment="reps.id of the manager"),
    Column("is_active", Boolean, nullable=False),
    Column("hired_on", Date),
    Column("created_at", UTCDateTime()),
    *_tail_columns(),
    Index(None, "team_id"),
    Index(None, "email"),
    comment="Sales reps and managers (Salesforce User, HubSpot owner).",
)

stages = Table(
    "stages",
    metadata,
    *_crm_columns(),
    Column("pipeline", String(100), nullable=False, comment="pipeline id ('default' for Salesforce)"),
    Column("api_name", String(255), nullable=False, comment="the value deals carry (StageName / dealstage id)"),
    Column("label", String(255), nullable=False),
    Column("sort_order", Integer, nullable=False, comment="position in the funnel, ascending"),
    Column("probability", Float, nullable=False, comment="default win probability, 0..1"),
    Column("is_closed", Boolean, nullable=False),
    Column("is_won", Boolean, nullable=False),
    Column("is_active", Boolean, nullable=False),
    *_tail_columns(deletable=False),
    comment="Funnel stages per pipeline.",
)

leads = Table(
    "leads",
    metadata,
    *_crm_columns(),
    Column("name", String(1000)),
    Column("company", String(1000)),
    Column("email", String(320)),
    Column("owner_id", String(80), comment="reps.id of the owner"),
    Column("status", String(100), comment="CRM status or lifecycle stage"),
    Column("lead_source", String(100), comment="Web, Referral, Event, ..."),
    Column("is_qualified", Boolean, nullable=False),
    Column("is_converted", Boolean, nullable=False),
    Column("converted_at", UTCDateTime()),
    Column("converted_opportunity_id", String(80), comment="opportunities.id the lead became"),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("assigned_at", UTCDateTime(), comment="when the current owner got the lead"),
    *_tail_columns(),
    Index(None, "owner_id", "assigned_at"),
    Index(None, "created_at"),
    Index(None, "assigned_at"),  # leads assigned in a window (lead rules)
    comment="Leads (Salesforce Lead, HubSpot contact).",
)

opportunities = Table(
    "opportunities",
    metadata,
    *_crm_columns(),
    Column("name", String(1000)),
    Column("owner_id", String(80), comment="reps.id of the owner"),
    Column("amount", Money, comment="in the record's currency"),
    Column("currency", String(3), comment="ISO 4217"),
    Column("amount_reporting", Money, comment="amount converted to the reporting currency"),
    Column("pipeline", String(100), nullable=False),
    Column("stage", String(255), nullable=False, comment="stages.api_name"),
    Column("stage_id", String(80), comment="stages.id"),
    Column("probability", Float, comment="0..1"),
    Column("is_closed", Boolean, nullable=False),
    Column("is_won", Boolean, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("close_date", Date, comment="expected (open) or actual (closed) close date"),
    Column("closed_at", UTCDateTime()),
    Column("stage_entered_at", UTCDateTime(), comment="when the deal entered its current stage"),
    Column("last_activity_at", UTCDateTime()),
    Column("lead_id", String(80), comment="leads.id the deal came from, when known"),
    Column("crm_url", String(500), comment="link to the record in the CRM"),
    *_tail_columns(),
    Index(None, "owner_id", "is_closed", "close_date"),
    Index(None, "is_closed", "stage", "stage_entered_at"),
    Index(None, "closed_at"),
    Index(None, "updated_at"),
    Index(None, "synced_at"),  # what a sync touched: derived columns are refreshed for those rows only
    Index(None, "stage_entered_at"),  # deals whose stage changed after an as-of instant (rules/asof.py)
    # what a stage change needs of its deal, without reading the wide row (history rules)
    Index("ix_opportunities_history_keys", "id", "source", "pipeline", "owner_id", "created_at", "deleted_at"),
    comment="Deals (Salesforce Opportunity, HubSpot deal).",
)

stage_changes = Table(
    "stage_changes",
    metadata,
    *_crm_columns(),
    Column("opportunity_id", String(80), nullable=False, comment="opportunities.id"),
    Column("from_stage", String(255), comment="stages.api_name before; null for the first stage"),
    Column("to_stage", String(255), nullable=False, comment="stages.api_name after"),
    Column("changed_at", UTCDateTime(), nullable=False),
    Column("synced_at", UTCDateTime(), nullable=False),
    Index(None, "opportunity_id", "changed_at"),
    Index(None, "changed_at"),
    # each change after the one before it on the deal, read in order from the index (time in stage)
    Index(None, "opportunity_id", "changed_at", "id", "from_stage"),
    # a trailing window's moves from the index alone (stage conversion)
    Index(None, "changed_at", "opportunity_id", "from_stage", "to_stage"),
    comment="Every stage move of every deal.",
)

close_date_changes = Table(
    "close_date_changes",
    metadata,
    *_crm_columns(),
    Column("opportunity_id", String(80), nullable=False, comment="opportunities.id"),
    Column("old_date", Date),
    Column("new_date", Date),
    Column("changed_at", UTCDateTime(), nullable=False),
    Column("synced_at", UTCDateTime(), nullable=False),
    Index(None, "opportunity_id", "changed_at"),
    comment="Every change of a deal's expected close date (pushes are later new_date).",
)

activities = Table(
    "activities",
    metadata,
    *_crm_columns(),
    Column("type", String(10), nullable=False, comment="call | email | meeting | task | note"),
    Column("subject", String(1000)),
    Column("rep_id", String(80), comment="reps.id of the owner"),
    Column("opportunity_id", String(80), comment="opportunities.id, when linked to a deal"),
    Column("lead_id", String(80), comment="leads.id, when linked to a lead"),
    Column("occurred_at", UTCDateTime(), nullable=False),
    Column("created_at", UTCDateTime()),
    *_tail_columns(),
    Index(None, "opportunity_id", "occurred_at"),
    Index(None, "rep_id", "occurred_at"),
    Index(None, "synced_at"),
    Index(None, "lead_id", "occurred_at"),  # a lead's first touch (lead_response_time)
    comment="Calls, emails, meetings, tasks and notes.",
)

quotas = Table(
    "quotas",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("source", String(20), nullable=False, comment="file | salesforce"),
    Column("external_id", String(64), comment="ForecastingQuota id; null for the quota file"),
    Column("rep_id", String(80), nullable=False, comment="reps.id"),
    Column("period_start", Date, nullable=False),
    Column("period_end", Date, nullable=False, comment="inclusive"),
    Column("amount", Money, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("amount_reporting", Money, nullable=False),
    Column("synced_at", UTCDateTime(), nullable=False),
    UniqueConstraint("source", "rep_id", "period_start", "period_end"),
    Index(None, "rep_id", "period_start"),
    comment="Quota per rep and period; where file and CRM both have one, the file wins.",
)

sync_state = Table(
    "sync_state",
    metadata,
    Column("source", String(20), primary_key=True),
    Column("stream", String(40), primary_key=True),
    Column("cursor", Text, comment="JSON; written in the same transaction as the rows it covers"),
    Column("updated_at", UTCDateTime(), nullable=False),
    comment="Where each incremental stream resumes.",
)

sync_runs = Table(
    "sync_runs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("source", String(20), nullable=False),
    Column("stream", String(40), nullable=False),
    Column("full", Boolean, nullable=False, comment="a --full run (cursor ignored)"),
    Column("status", String(12), nullable=False, comment="running | ok | failed"),
    Column("started_at", UTCDateTime(), nullable=False),
    Column("finished_at", UTCDateTime()),
    Column("records_read", Integer, nullable=False, default=0),
    Column("records_written", Integer, nullable=False, default=0),
    Column("records_quarantined", Integer, nullable=False, default=0),
    Column("records_deleted", Integer, nullable=False, default=0),
    Column("duration_s", Float),
    Column("cursor_before", Text),
    Column("cursor_after", Text),
    Column("error", Text, comment="one-line reason when status is failed"),
    Index(None, "source", "stream", "started_at"),
    comment="One row per stream per sync run.",
)

sync_locks = Table(
    "sync_locks",
    metadata,
    Column("source", String(20), primary_key=True),
    Column("holder", String(200), nullable=False, comment="host:pid of the running sync"),
    Column("acquired_at", UTCDateTime(), nullable=False),
    Column("heartbeat_at", UTCDateTime(), nullable=False),
    comment="At most one sync per source at a time.",
)

quarantine = Table(
    "quarantine",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("source", String(20), nullable=False),
    Column("stream", String(40), nullable=False),
    Column("external_id", String(64), nullable=False),
    Column("payload", Text, nullable=False, comment="the record as the CRM sent it (JSON)"),
    Column("reason", Text, nullable=False),
    Column("first_seen_at", UTCDateTime(), nullable=False),
    Column("last_seen_at", UTCDateTime(), nullable=False),
    Column("times_seen", Integer, nullable=False, default=1),
    UniqueConstraint("source", "stream", "external_id"),
    comment="Records that failed validation; they leave when a valid version arrives.",
)

alerts = Table(
    "alerts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("fingerprint", String(64), nullable=False, comment="hash of rule id + subject"),
    Column("rule_id", String(100), nullable=False),
    Column("subject", String(200), nullable=False, comment="what the alert is about (rep, stage, team...)"),
    Column("state", String(10), nullable=False, comment="firing | resolved"),
    Column("severity", String(10), nullable=False),
    Column("summary", Text, nullable=False),
    Column("details", Text, comment="JSON: the numbers behind the finding"),
    Column("first_fired_at", UTCDateTime(), nullable=False),
    Column("last_fired_at", UTCDateTime(), nullable=False),
    Column("last_notified_at", UTCDateTime()),
    Column("resolved_at", UTCDateTime()),
    Column("notify_count", Integer, nullable=False, default=0),
    UniqueConstraint("fingerprint"),
    Index(None, "rule_id", "state"),
    comment="One row per rule and subject; its lifecycle firing -> resolved -> firing again.",
)

notifications = Table(
    "notifications",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("alert_id", Integer, ForeignKey("alerts.id"), nullable=False),
    Column("kind", String(10), nullable=False, comment="firing | repeat | resolved"),
    Column("channel", String(100), nullable=False),
    Column("payload", Text, nullable=False, comment="Block Kit message (JSON)"),
    Column("status", String(10), nullable=False, comment="pending | sent | dead"),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", UTCDateTime(), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("sent_at", UTCDateTime()),
    Column("slack_channel_id", String(30)),
    Column("slack_ts", String(30), comment="Slack message ts once sent"),
    Column("last_error", Text),
    Index(None, "status", "next_attempt_at"),
    Index(None, "alert_id"),
    comment="The durable outbox: written before sending, marked sent only after Slack said ok.",
)

silences = Table(
    "silences",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("rule_id", String(100), nullable=False),
    Column("subject", String(200), comment="null: every subject of the rule"),
    Column("reason", Text, nullable=False),
    Column("created_by", String(200), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("ends_at", UTCDateTime(), nullable=False),
    Column("expired_at", UTCDateTime(), comment="set when expired early"),
    Index(None, "rule_id", "ends_at"),
    comment="Mutes alerts of a rule (and subject) until ends_at.",
)

# Tables with CRM data, in the order a full sync fills them.
CRM_TABLES = (reps, stages, leads, opportunities, stage_changes, close_date_changes, activities, quotas)
