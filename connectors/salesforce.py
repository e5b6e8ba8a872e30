"""Salesforce, through simple-salesforce's REST query API.

Every stream is one SOQL query run through ``queryAll`` ordered by its replication key
and Id, so changes and deletions (``IsDeleted = true`` rows) arrive in one ascending
sequence and the engine's cursor stays safe. Pages follow ``nextRecordsUrl`` (2,000
records each); each HTTP call has a timeout and goes through the retry policy.

A full read (no cursor yet, or ``--full``) of an object with at least
``salesforce.bulk_threshold`` rows goes through a Bulk API 2.0 query job instead
(:mod:`connectors.salesforce_bulk`); its CSV rows become the same records. A run that
stops mid-way resumes from the committed cursor, incrementally, through REST.

Streams and their objects: exchange_rates (CurrencyType and DatedConversionRate, read whole;
none in a single-currency org, :mod:`connectors.salesforce_rates`), reps (User + UserRole),
stages (OpportunityStage), leads (Lead), opportunities (Opportunity), stage_changes and close_date_changes
(OpportunityFieldHistory, which has no SystemModstamp: its cursor is CreatedDate),
tasks (Task: calls, emails, tasks) and events (Event: meetings), quotas
(ForecastingQuota, only where Collaborative Forecasts is on; quarterly periods).

How requests are made, authenticated, retried and translated:
:mod:`connectors.salesforce_client`; the streams: :mod:`connectors.salesforce_streams`;
value parsing: :mod:`connectors.salesforce_values`.
"""

from __future__ import annotations

import logging

import requests

from connectors import retry
from connectors.base import Connector, Stream
from connectors.salesforce_client import SalesforceClient
from connectors.salesforce_rates import ExchangeRatesStream
from connectors.salesforce_streams import (
    CloseDateChangesStream,
    EventsStream,
    LeadsStream,
    OpportunitiesStream,
    QuotasStream,
    RepsStream,
    StageChangesStream,
    StagesStream,
    TasksStream,
)
from models.settings import SalesforceSettings

log = logging.getLogger("salespulse.connectors.salesforce")

SOURCE = "salesforce"


class SalesforceConnector(Connector):
    source = SOURCE

    def __init__(
        self,
        settings: SalesforceSettings,
        policy: retry.RetryPolicy,
        *,
        reporting_currency: str,
        session: requests.Session | None = None,
    ) -> None:
        self.client = SalesforceClient(settings, policy, session)
        self.reporting_currency = reporting_currency
        self.instance_url = settings.instance_url or f"https://{self.client.sf.sf_instance}"

    def streams(self) -> list[Stream]:
        c, url, cur = self.client, self.instance_url, self.reporting_currency
        lead_fields = c.describe_fields("Lead") or {}
        task_fields = c.describe_fields("Task") or {}
        user_fields = c.describe_fields("User") or {}
        streams: list[Stream] = [
            ExchangeRatesStream(c, url),
            RepsStream(c, url, has_hire_date=RepsStream.hire_date_field in user_fields),
            StagesStream(c, url),
            LeadsStream(c, url, has_assigned_field=LeadsStream.assigned_field in lead_fields),
            OpportunitiesStream(c, url, default_currency=cur),
            StageChangesStream(c, url),
            CloseDateChangesStream(c, url),
            TasksStream(c, url, has_completed="CompletedDateTime" in task_fields),
            EventsStream(c, url),
        ]
        if c.describe_fields("ForecastingQuota") is not None:
            streams.append(QuotasStream(c, url, default_currency=cur))
        else:
            log.info("ForecastingQuota is not available in this org; quotas come from the quota file only")
        return streams

    def close(self) -> None:
        self.client.session.close()
