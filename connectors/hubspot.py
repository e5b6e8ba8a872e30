"""HubSpot, through hubspot-api-client (CRM v3 objects, owners, pipelines; associations v4).

Streams, in dependency order, and where they come from:

- exchange_rates: the company currency and exchange rates (``/settings/v3/currencies``),
  read whole each run (:mod:`connectors.hubspot_rates`);
- reps: owners (``/crm/v3/owners``), active and archived (people who left: inactive);
- stages: deal pipelines and their stages (``/crm/v3/pipelines/deals``);
- leads: contacts; opportunities: deals (search on the modification stamp, archived
  records from the list endpoint as deletions, first associated contact / deal);
- stage_changes, close_date_changes: ``dealstage`` / ``closedate`` history of the deals
  modified since the cursor (batch read with ``propertiesWithHistory``);
- calls, emails, meetings, tasks, notes: engagements, all feeding ``activities``, each
  with its first associated deal and contact.

HubSpot has no quota object; quotas come from the quota file. How requests are made,
retried and checked: :mod:`connectors.hubspot_client`; how incremental reads stay
complete and ordered past the search API's limits: :mod:`connectors.hubspot_search`.
"""

from __future__ import annotations

from connectors import retry
from connectors.base import Connector, Stream
from connectors.hubspot_client import HubSpotClient
from connectors.hubspot_history import CloseDateChangesStream, StageChangesStream
from connectors.hubspot_rates import ExchangeRatesStream
from connectors.hubspot_streams import ACTIVITY_STREAMS, LeadsStream, OpportunitiesStream, RepsStream, StagesStream
from models.settings import HubSpotSettings

SOURCE = "hubspot"


class HubSpotConnector(Connector):
    source = SOURCE

    def __init__(self, settings: HubSpotSettings, policy: retry.RetryPolicy, *, default_currency: str = "USD") -> None:
        """``default_currency``: the currency of deals without ``deal_currency_code`` (single-currency portals)."""
        self.client = HubSpotClient(settings, policy)
        self.portal_id = settings.portal_id
        self.default_currency = default_currency

    def streams(self) -> list[Stream]:
        c = self.client
        return [
            ExchangeRatesStream(c),
            RepsStream(c),
            StagesStream(c),
            LeadsStream(c),
            OpportunitiesStream(c, default_currency=self.default_currency, portal_id=self.portal_id),
            StageChangesStream(c),
            CloseDateChangesStream(c),
            *(stream(c) for stream in ACTIVITY_STREAMS),
        ]

    def close(self) -> None:
        self.client.close()
