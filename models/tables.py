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
  reporting currency (``amount_reporting``) at the rate in ``exchange_rates`` (the CRMs' own
  rates) unless ``[company.fx_rates]`` in settings overrides it; a changed rate re-converts.
- ``quarantine_id`` on a data row: the CRM's latest version of the record is in quarantine,
  so the row shows an older, valid version (stale) until a valid version arrives.
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
    text,
    true,
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
Rate = Numeric(28, 12)


def _stale_column() -> Column:
    return Column(
        "quarantine_id",
        Integer,
        comment="quarantine.id of the CRM's newer, invalid version: this row is stale until a valid one arrives",
    )


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
    Column("name", String(500), nullable=False, comment="full name"),
    Column("title", String(255), comment="job title"),
    Column("team_id", String(80), comment="'<source>:<team id>' (Salesforce role, HubSpot team)"),
    Column("team", String(255), comment="team name as shown in the CRM"),
    Column("manager_id", String(80), comment="reps.id of the manager"),
    Column("is_active", Boolean, nullable=False, comment="false for deactivated users and archived owners"),
    Column("hired_on", Date, comment="start date: hired_on_file when the quota file gives one, else hired_on_crm"),
    Column("hired_on_crm", Date, comment="the CRM's: a Hire_Date__c user field, else the user or owner creation day"),
    Column("hired_on_file", Date, comment="the quota file's hired_on column for this rep, if any"),
    Column("lead_capacity", Float, comment="the quota file's lead_capacity: share of a team's new leads relative to 1"),
    Column("leave_from", Date, comment="the quota file's leave_from: first day of a leave (no new leads)"),
    Column("leave_until", Date, comment="the quota file's leave_until: last day of that leave; null: open-ended"),
    Column("created_at", UTCDateTime(), comment="when the user or owner was created in the CRM"),
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
    Column("label", String(255), nullable=False, comment="name as shown in the CRM"),
    Column("sort_order", Integer, nullable=False, comment="position in the funnel, ascending"),
    Column("probability", Float, nullable=False, comment="default win probability, 0..1"),
    Column("is_closed", Boolean, nullable=False, comment="deals here are closed"),
    Column("is_won", Boolean, nullable=False, comment="deals here are won"),
    Column("is_active", Boolean, nullable=False, comment="false for stages retired in the CRM"),
    *_tail_columns(deletable=False),
    comment="Funnel stages per pipeline.",
)

leads = Table(
    "leads",
    metadata,
    *_crm_columns(),
    Column("name", String(1000), comment="person's name, cut to 1,000 characters"),
    Column("company", String(1000), comment="company name, cut to 1,000 characters"),
    Column("email", String(320), comment="lower-cased email"),
    Column("owner_id", String(80), comment="reps.id of the owner"),
    Column("status", String(100), comment="CRM status or lifecycle stage"),
    Column("lead_source", String(100), comment="Web, Referral, Event, ..."),
    Column("is_qualified", Boolean, nullable=False, comment="qualified (status or lifecycle stage), or converted"),
    Column("is_converted", Boolean, nullable=False, comment="converted into a deal / customer"),
    Column("converted_at", UTCDateTime(), comment="when it was converted"),
    Column("converted_opportunity_id", String(80), comment="opportunities.id the lead became"),
    Column("created_at", UTCDateTime(), nullable=False, comment="when the lead was created in the CRM"),
    Column("assigned_at", UTCDateTime(), comment="when the current owner got the lead"),
    _stale_column(),
    *_tail_columns(),
    # a window's assignments per owner from the index alone, in owner order (lead_distribution)
    Index("ix_leads_owner_assignments", "owner_id", "assigned_at", "created_at", "deleted_at", "quarantine_id"),
    # PostgreSQL has no skip scan: it reads a window of leads by time, and from these indexes alone (the lead
    # rules' columns; 0.9 -> 0.4 s for the three at a million leads, where it read each lead's row)
    Index(
        "ix_leads_created_cohorts",
        "created_at",
        "owner_id",
        "lead_source",
        "is_qualified",
        "is_converted",
        "deleted_at",
        "quarantine_id",
    ),
    Index("ix_leads_assigned_window", "assigned_at", "owner_id", "created_at", "deleted_at", "quarantine_id", "id"),
    # a window's leads per owner and source from the index alone, in that order (lead_qualification_rate's
    # cohorts): the grouping streams, where from a (created_at, ...) index it sorted half a million leads
    Index(
        "ix_leads_cohorts",
        "owner_id",
        "lead_source",
        "created_at",
        "is_qualified",
        "is_converted",
        "deleted_at",
        "quarantine_id",
    ),
    comment="Leads (Salesforce Lead, HubSpot contact).",
)

OPEN_DEAL_INDEX = (
    "is_closed", "owner_id", "source", "pipeline", "stage", "stage_entered_at", "created_at", "deleted_at",
    "quarantine_id", "id", "amount_reporting", "close_date", "updated_at", "synced_at", "last_activity_at",
    "close_date_pushes", "close_date_changed_at", "close_date_previous",
)  # fmt: skip

CLOSED_DEAL_INDEX = (
    "is_closed", "close_date", "owner_id", "is_won", "amount_reporting", "updated_at", "synced_at", "stage_entered_at",
    "closed_at", "deleted_at", "quarantine_id", "source", "pipeline",
)  # fmt: skip
# The won deals of a period (won amounts per rep, the company's deal sizes): a few percent of the closed deals
WON_DEAL_INDEX = ("is_closed", "is_won", *(c for c in CLOSED_DEAL_INDEX if c not in ("is_closed", "is_won")))
HISTORY_KEYS = ("id", "source", "pipeline", "owner_id", "created_at", "deleted_at", "quarantine_id", "amount_reporting")

opportunities = Table(
    "opportunities",
    metadata,
    *_crm_columns(),
    Column("name", String(1000), comment="deal name, cut to 1,000 characters"),
    Column("owner_id", String(80), comment="reps.id of the owner"),
    Column("amount", Money, comment="in the record's currency"),
    Column("currency", String(3), comment="ISO 4217"),
    Column("amount_reporting", Money, comment="amount converted to the reporting currency"),
    Column("pipeline", String(100), nullable=False, comment="pipeline id ('default' for Salesforce)"),
    Column("stage", String(255), nullable=False, comment="stages.api_name"),
    Column("stage_id", String(80), comment="stages.id"),
    Column("probability", Float, comment="0..1"),
    Column("is_closed", Boolean, nullable=False, comment="won or lost"),
    Column("is_won", Boolean, nullable=False, comment="closed and won"),
    Column("created_at", UTCDateTime(), nullable=False, comment="when the deal was created in the CRM"),
    Column("close_date", Date, comment="expected (open) or actual (closed) close date"),
    Column("closed_at", UTCDateTime(), comment="when the deal closed; null while open"),
    Column("stage_entered_at", UTCDateTime(), comment="when the deal entered its current stage"),
    Column("last_activity_at", UTCDateTime(), comment="latest activity on the deal (kept by the sync from activities)"),
    Column(
        "close_date_pushes",
        Integer,
        nullable=False,
        server_default="0",
        comment="close-date changes to a later date (kept by the sync from close_date_changes)",
    ),
    Column(
        "rollup_pipeline",
        String(100),
        comment="the pipeline the stage rollups count this deal's changes under; null: not counted (deleted, "
        "stale) or not yet (kept by the sync)",
    ),
    Column(
        "close_date_changed_at",
        UTCDateTime(),
        comment="the latest close-date change (kept by the sync from close_date_changes); null: never changed",
    ),
    Column(
        "close_date_previous",
        Date,
        comment="the close date before the latest change (kept by the sync from close_date_changes); null: never "
        "changed",
    ),
    Column("lead_id", String(80), comment="leads.id the deal came from, when known"),
    Column("crm_url", String(500), comment="link to the record in the CRM"),
    _stale_column(),
    *_tail_columns(),
    Index(None, "owner_id", "is_closed", "close_date"),
    Index(None, "is_closed", "stage", "stage_entered_at"),
    # What the rules read of an open deal, from the index alone (no look-up of each row): a third of a
    # million open deals at the large scale, read by most rules. Owner first: they group per owner (and
    # stage), which then streams from the index instead of sorting every deal.
    Index(
        "ix_opportunities_open_deals",
        *OPEN_DEAL_INDEX,
        sqlite_where=text("is_closed = 0"),
        postgresql_where=text("is_closed = false"),
    ),
    Index(None, "closed_at"),
    Index(None, "updated_at"),
    Index(None, "synced_at"),  # what a sync touched: derived columns are refreshed for those rows only
    Index(None, "stage_entered_at"),  # deals whose stage changed after an as-of instant (rules/asof.py)
    # Deals closed in a period, by close date, with what the performance rules read of them (a year of
    # closed deals is a third of a million at the large scale): from the index alone.
    Index(
        "ix_opportunities_closed_deals",
        *CLOSED_DEAL_INDEX,
        sqlite_where=text("is_closed = 1"),
        postgresql_where=text("is_closed = true"),
    ),
    # Won deals only: won amounts per rep and the company's deal sizes read a few percent of a year's closed
    # deals instead of all of them (at a million deals 32k of 536k).
    Index(
        "ix_opportunities_won_deals",
        *WON_DEAL_INDEX,
        sqlite_where=text("is_closed = 1 AND is_won = 1"),
        postgresql_where=text("is_closed = true AND is_won = true"),
    ),
    Index(None, "deleted_at"),  # deals deleted by an instant (their stage moves leave the win rates)
    # what a stage change needs of its deal, without reading the wide row (history rules; the amount picks the
    # biggest deals for samples)
    Index("ix_opportunities_history_keys", *HISTORY_KEYS),
    comment="Deals (Salesforce Opportunity, HubSpot deal).",
)

stage_changes = Table(
    "stage_changes",
    metadata,
    *_crm_columns(),
    Column("opportunity_id", String(80), nullable=False, comment="opportunities.id"),
    Column("from_stage", String(255), comment="stages.api_name before; null for the first stage"),
    Column("to_stage", String(255), nullable=False, comment="stages.api_name after"),
    Column("changed_at", UTCDateTime(), nullable=False, comment="when the deal moved, in the CRM"),
    Column(
        "entered_at",
        UTCDateTime(),
        comment="when the deal entered from_stage: the deal's previous change, or its creation (kept by the sync; "
        "null until the sync derives it)",
    ),
    Column("synced_at", UTCDateTime(), nullable=False, comment="when salespulse last wrote this row"),
    Column("deleted_at", UTCDateTime(), comment="set when the deal or this history row was deleted in the CRM"),
    Index(None, "opportunity_id", "changed_at"),
    Index(None, "changed_at"),
    # moves per pair of stages with their deal, from the index alone (win rates, stage conversion samples)
    Index("ix_stage_changes_pair_moves", "source", "from_stage", "to_stage", "changed_at", "opportunity_id"),
    # each change after the one before it on the deal, read in order from the index (deriving entered_at)
    Index(None, "opportunity_id", "changed_at", "id", "from_stage"),
    # a trailing window's moves and their time in stage from the index alone (stage conversion, stalled stage)
    Index("ix_stage_changes_window_moves", "changed_at", "opportunity_id", "from_stage", "to_stage", "entered_at"),
    # changes whose entered_at the sync has still to derive (new or rewritten rows): few, so a small index
    Index(
        "ix_stage_changes_underived",
        "opportunity_id",
        sqlite_where=text("entered_at IS NULL"),
        postgresql_where=text("entered_at IS NULL"),
    ),
    comment="Every stage move of every deal.",
)

# Per-day rollups of stage_changes kept by the sync (sync/rollups.py), so the history rules read a few
# rows per day of their window instead of every change: counted over changes with a from_stage of deals
# not deleted and not stale, by the UTC day of changed_at, with the deal's current source and pipeline.
stage_move_days = Table(
    "stage_move_days",
    metadata,
    Column("day", Date, nullable=False, comment="UTC day of the moves"),
    Column("source", String(20), nullable=False, comment="CRM"),
    Column("pipeline", String(100), nullable=False, comment="the deal's pipeline"),
    Column("from_stage", String(255), nullable=False, comment="stages.api_name left"),
    Column("to_stage", String(255), nullable=False, comment="stages.api_name entered"),
    Column("moves", Integer, nullable=False, comment="stage changes from_stage -> to_stage that day"),
    Index("ix_stage_move_days_window", "day", "source", "pipeline", "from_stage", "to_stage", "moves"),
    comment="Stage moves per UTC day (kept by the sync; rebuilt from stage_changes for every day a sync touched).",
)

stage_stay_days = Table(
    "stage_stay_days",
    metadata,
    Column("day", Date, nullable=False, comment="UTC day the deals left the stage"),
    Column("source", String(20), nullable=False, comment="CRM"),
    Column("pipeline", String(100), nullable=False, comment="the deal's pipeline"),
    Column("stage", String(255), nullable=False, comment="stages.api_name left (from_stage)"),
    Column("days_in_stage", Integer, nullable=False, comment="whole days from entered_at to changed_at"),
    Column("exits", Integer, nullable=False, comment="stage changes out of the stage that day after that stay"),
    Index("ix_stage_stay_days_window", "day", "source", "pipeline", "stage", "days_in_stage", "exits"),
    comment="Time in stage of the deals that left it, per UTC day (kept by the sync like stage_move_days).",
)

STAGE_ROLLUPS = (stage_move_days, stage_stay_days)

close_date_changes = Table(
    "close_date_changes",
    metadata,
    *_crm_columns(),
    Column("opportunity_id", String(80), nullable=False, comment="opportunities.id"),
    Column("old_date", Date, comment="expected close date before the change"),
    Column("new_date", Date, comment="expected close date after the change (later: a push)"),
    Column("changed_at", UTCDateTime(), nullable=False, comment="when the change was made in the CRM"),
    Column("synced_at", UTCDateTime(), nullable=False, comment="when salespulse last wrote this row"),
    Column("deleted_at", UTCDateTime(), comment="set when the deal or this history row was deleted in the CRM"),
    # a deal's changes with their dates from the index alone (close_date_slipped reads them per open deal)
    Index("ix_close_date_changes_deal_dates", "opportunity_id", "changed_at", "old_date", "new_date"),
    comment="Every change of a deal's expected close date (pushes are later new_date).",
)

activities = Table(
    "activities",
    metadata,
    *_crm_columns(),
    Column("type", String(10), nullable=False, comment="call | email | meeting | task | note"),
    Column("subject", String(1000), comment="subject line as in the CRM, cut to 1,000 characters"),
    Column("rep_id", String(80), comment="reps.id of the owner"),
    Column("opportunity_id", String(80), comment="opportunities.id, when linked to a deal"),
    Column("lead_id", String(80), comment="leads.id, when linked to a lead"),
    Column(
        "occurred_at",
        UTCDateTime(),
        nullable=False,
        comment="when the call, meeting or email happened (a task: its due or completion time)",
    ),
    Column("created_at", UTCDateTime(), comment="when the activity was created in the CRM"),
    _stale_column(),
    *_tail_columns(),
    Index(None, "opportunity_id", "occurred_at"),
    Index(None, "rep_id", "occurred_at"),
    Index(None, "synced_at"),
    # a lead's first touch (lead_response_time), from the index alone
    Index("ix_activities_lead_touches", "lead_id", "occurred_at", "deleted_at", "quarantine_id"),
    comment="Calls, emails, meetings, tasks and notes.",
)

quotas = Table(
    "quotas",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True, comment="surrogate key"),
    Column("source", String(20), nullable=False, comment="file | salesforce"),
    Column("external_id", String(64), comment="ForecastingQuota id; null for the quota file"),
    Column("rep_id", String(80), nullable=False, comment="reps.id"),
    Column("period_start", Date, nullable=False, comment="first day of the period"),
    Column("period_end", Date, nullable=False, comment="inclusive"),
    Column("amount", Money, nullable=False, comment="in the quota's currency"),
    Column("currency", String(3), nullable=False, comment="ISO 4217"),
    Column("amount_reporting", Money, nullable=False, comment="amount converted to the reporting currency"),
    Column("synced_at", UTCDateTime(), nullable=False, comment="when salespulse last wrote this row"),
    Column(
        "is_effective",
        Boolean,
        nullable=False,
        server_default=true(),
        comment="false for a Salesforce quota whose rep has a quota-file quota overlapping its period (the file "
        "wins); quota checks read effective quotas only",
    ),
    _stale_column(),
    UniqueConstraint("source", "rep_id", "period_start", "period_end"),
    Index(None, "rep_id", "period_start"),
    comment="Quota per rep and period; where file and CRM both have one, the file wins.",
)

exchange_rates = Table(
    "exchange_rates",
    metadata,
    *_crm_columns(),
    Column("currency", String(3), nullable=False, comment="ISO 4217 code the rate converts from"),
    Column("base_currency", String(3), nullable=False, comment="the CRM's corporate (company) currency"),
    Column("base_per_unit", Rate, nullable=False, comment="units of base_currency per one unit of currency"),
    Column(
        "rate",
        Rate,
        comment="units of the reporting currency per one unit of currency; null while base to reporting is unknown",
    ),
    Column("valid_from", Date, comment="first day the rate applies (by a deal's close date); null: open"),
    Column("valid_to", Date, comment="first day it no longer applies; null: open"),
    Column("is_dated", Boolean, nullable=False, comment="a dated rate (Salesforce DatedConversionRate)"),
    *_tail_columns(),
    Index(None, "currency"),
    comment="Exchange rates read from the CRMs (Salesforce CurrencyType/DatedConversionRate, HubSpot).",
)

# A sync_state row (per source) that is not a stream: the rates the stored amounts were last
# converted with, so a changed rate re-converts them once.
RATES_APPLIED = "exchange_rates.applied"
# Another: the start of the last run whose derived columns were computed (ISO instant), so the next run
# derives everything written since then, including what a run cut off before that step stored.
DERIVED_SINCE = "derived.since"

sync_state = Table(
    "sync_state",
    metadata,
    Column("source", String(20), primary_key=True, comment="CRM"),
    Column("stream", String(40), primary_key=True, comment="sync stream"),
    Column("cursor", Text, comment="JSON; written in the same transaction as the rows it covers"),
    Column("updated_at", UTCDateTime(), nullable=False, comment="when the cursor was last stored"),
    comment="Where each incremental stream resumes.",
)

sync_runs = Table(
    "sync_runs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True, comment="surrogate key"),
    Column("source", String(20), nullable=False, comment="CRM synced"),
    Column("stream", String(40), nullable=False, comment="stream synced"),
    Column("full", Boolean, nullable=False, comment="a --full run (cursor ignored)"),
    Column("status", String(12), nullable=False, comment="running | ok | degraded | failed | interrupted | skipped"),
    Column("started_at", UTCDateTime(), nullable=False, comment="when the stream's run started"),
    Column("finished_at", UTCDateTime(), comment="when it ended; null while running"),
    Column(
        "records_read",
        Integer,
        nullable=False,
        default=0,
        comment="records read from the CRM (boundary repeats excluded)",
    ),
    Column("records_written", Integer, nullable=False, default=0, comment="rows upserted"),
    Column("records_quarantined", Integer, nullable=False, default=0, comment="records refused into quarantine"),
    Column("records_deleted", Integer, nullable=False, default=0, comment="rows marked deleted"),
    Column("duration_s", Float, comment="seconds the run took"),
    Column("cursor_before", Text, comment="stored cursor (JSON) when the run started"),
    Column("cursor_after", Text, comment="cursor (JSON) the run left"),
    Column("error", Text, comment="one-line reason when status is not ok"),
    Index(None, "source", "stream", "started_at"),
    comment="One row per stream per sync run.",
)

sync_locks = Table(
    "sync_locks",
    metadata,
    Column("source", String(20), primary_key=True, comment="CRM the lock is for"),
    Column("holder", String(200), nullable=False, comment="host:pid of the running sync"),
    Column("acquired_at", UTCDateTime(), nullable=False, comment="when the running sync took the lock"),
    Column(
        "heartbeat_at",
        UTCDateTime(),
        nullable=False,
        comment="latest sign of life: per committed batch and during waits",
    ),
    comment="At most one sync per source at a time.",
)

quarantine = Table(
    "quarantine",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True, comment="surrogate key"),
    Column("source", String(20), nullable=False, comment="CRM the record came from"),
    Column("stream", String(40), nullable=False, comment="sync stream that read it"),
    Column("external_id", String(64), nullable=False, comment="the CRM's own record id"),
    Column("payload", Text, nullable=False, comment="the record as the CRM sent it (JSON)"),
    Column("reason", Text, nullable=False, comment="why it was refused, field by field"),
    Column("first_seen_at", UTCDateTime(), nullable=False, comment="first sync that refused it"),
    Column("last_seen_at", UTCDateTime(), nullable=False, comment="latest sync that refused it"),
    Column("times_seen", Integer, nullable=False, default=1, comment="syncs that refused it"),
    UniqueConstraint("source", "stream", "external_id"),
    comment="Records that failed validation; they leave when a valid version arrives.",
)

alerts = Table(
    "alerts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True, comment="surrogate key; notifications.alert_id"),
    Column("fingerprint", String(64), nullable=False, comment="hash of rule id + subject"),
    Column("rule_id", String(100), nullable=False, comment="id of the rule that raised it"),
    Column("subject", String(200), nullable=False, comment="what the alert is about (rep, stage, team...)"),
    Column("state", String(10), nullable=False, comment="pending | firing | resolved"),
    Column("severity", String(10), nullable=False, comment="severity tier of the latest evaluation"),
    Column("summary", Text, nullable=False, comment="one-line text of the latest finding"),
    Column("details", Text, comment="JSON: the numbers behind the finding"),
    Column("first_fired_at", UTCDateTime(), nullable=False, comment="first evaluation of this episode that found it"),
    Column("last_fired_at", UTCDateTime(), nullable=False, comment="last evaluation that found it"),
    Column("last_notified_at", UTCDateTime(), comment="latest notification written to the outbox"),
    Column("resolved_at", UTCDateTime(), comment="when it stopped firing; null while firing"),
    Column("notify_count", Integer, nullable=False, default=0, comment="notifications written for this alert"),
    Column("subject_type", String(20), comment="rep | team | stage | pipeline | lead_source | company"),
    Column("subject_name", String(300), comment="the subject's display name (CRM text)"),
    Column("team", String(200), comment="team name of the subject, for routing and inhibition"),
    Column("family", String(100), comment="rule family (label 'family', else the kind): inhibition groups by it"),
    Column("channel", String(100), comment="Slack channel the alert is routed to"),
    Column(
        "consecutive",
        Integer,
        nullable=False,
        server_default="0",
        comment="evaluations in a row that found it (pending until the rule's 'for')",
    ),
    Column("firing_since", UTCDateTime(), comment="when it went from pending to firing"),
    Column("notified_severity", String(10), comment="severity the last notification announced"),
    Column("notification_id", Integer, comment="notifications.id of the message that announced this episode"),
    UniqueConstraint("fingerprint"),
    Index(None, "rule_id", "state"),
    comment="One row per rule and subject; its lifecycle pending -> firing -> resolved -> pending again.",
)

notifications = Table(
    "notifications",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True, comment="surrogate key"),
    Column(
        "alert_id",
        Integer,
        ForeignKey("alerts.id"),
        comment="the alert when the message is about one; notification_alerts lists them all",
    ),
    Column(
        "kind",
        String(10),
        nullable=False,
        comment="firing | repeat | severity | resolved | update | digest | chart (the digest's, in its thread)",
    ),
    Column("channel", String(100), nullable=False, comment="Slack channel name or id it goes to"),
    Column("payload", Text, nullable=False, comment="Block Kit message (JSON)"),
    Column("status", String(10), nullable=False, comment="pending | sending | sent | failed"),
    Column("attempts", Integer, nullable=False, default=0, comment="sends tried"),
    Column("next_attempt_at", UTCDateTime(), nullable=False, comment="when the next send may be tried"),
    Column("created_at", UTCDateTime(), nullable=False, comment="when it was written to the outbox"),
    Column("sent_at", UTCDateTime(), comment="when Slack said ok; null until then"),
    Column("slack_channel_id", String(30), comment="channel id Slack answered with"),
    Column("slack_ts", String(30), comment="Slack message ts once sent"),
    Column("last_error", Text, comment="reason of the latest failed send"),
    Column("rule_id", String(100), comment="the rule whose alerts the message is about"),
    Column("thread_of", Integer, comment="notifications.id of the message this one replies to (or updates)"),
    Column(
        "attempted_at",
        UTCDateTime(),
        comment="start of the last attempt; while status is 'sending' its outcome is unknown",
    ),
    Column(
        "digest_period",
        String(40),
        comment="for a scheduled digest: its scheduled time (ISO, UTC); one row per period and channel, so a "
        "second leader or a re-run queues nothing more. Null otherwise",
    ),
    Index(None, "status", "next_attempt_at"),
    Index(None, "alert_id"),
    Index(None, "channel", "digest_period", unique=True),
    comment="The durable outbox: written before sending, marked sent only after Slack said ok.",
)

notification_alerts = Table(
    "notification_alerts",
    metadata,
    Column("notification_id", Integer, ForeignKey("notifications.id"), primary_key=True, comment="notifications.id"),
    Column("alert_id", Integer, ForeignKey("alerts.id"), primary_key=True, comment="alerts.id"),
    Index(None, "alert_id"),
    comment="Which alerts one Slack message is about (one message per rule and channel per evaluation).",
)

silences = Table(
    "silences",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True, comment="surrogate key"),
    Column("rule_id", String(100), nullable=False, comment="rule whose alerts are muted"),
    Column("subject", String(200), comment="null: every subject of the rule"),
    Column("reason", Text, nullable=False, comment="why, as given by whoever muted it"),
    Column("created_by", String(200), nullable=False, comment="who muted it"),
    Column("created_at", UTCDateTime(), nullable=False, comment="when the silence was added"),
    Column("ends_at", UTCDateTime(), nullable=False, comment="when it stops muting"),
    Column("expired_at", UTCDateTime(), comment="set when expired early"),
    Index(None, "rule_id", "ends_at"),
    comment="Mutes alerts of a rule (and subject) until ends_at.",
)

daemon_leases = Table(
    "daemon_leases",
    metadata,
    Column("name", String(40), primary_key=True, comment="what the lease grants: 'scheduler' = run the jobs"),
    Column("holder", String(200), nullable=False, comment="host:pid of the daemon holding it"),
    Column("acquired_at", UTCDateTime(), nullable=False, comment="when the holder took the lease"),
    Column("renewed_at", UTCDateTime(), nullable=False, comment="the holder's last renewal"),
    Column("expires_at", UTCDateTime(), nullable=False, comment="another daemon may take the lease after this"),
    comment="One leader among daemons sharing a warehouse: the holder of an unexpired lease runs the jobs.",
)

daemon_instances = Table(
    "daemon_instances",
    metadata,
    Column("holder", String(200), primary_key=True, comment="host:pid of the daemon"),
    Column("started_at", UTCDateTime(), nullable=False, comment="when the daemon started"),
    Column("seen_at", UTCDateTime(), nullable=False, comment="the daemon's last heartbeat"),
    Column("role", String(10), nullable=False, comment="leader | standby | stopped"),
    Column("state", Text, nullable=False, comment="JSON: watched files, refused changes (file:line), jobs"),
    comment="Each running daemon's own account of itself, for `status` (rows of stopped daemons stay).",
)

rule_notes = Table(
    "rule_notes",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True, comment="surrogate key"),
    Column("rule_id", String(100), nullable=False, comment="id of the rule that wrote the note"),
    Column("subject", String(300), nullable=False, comment="the subject's display name"),
    Column("reason", Text, nullable=False, comment="why the rule could not judge it (a rep without quota...)"),
    Column("as_of", UTCDateTime(), nullable=False, comment="the evaluation that wrote the note"),
    Index(None, "rule_id"),
    comment="'Not evaluated' notes of each rule's latest evaluation (shown by check and status, never in Slack).",
)

# Tables with CRM data, in the order a full sync fills them.
CRM_TABLES = (exchange_rates, reps, stages, leads, opportunities, stage_changes, close_date_changes, activities, quotas)
