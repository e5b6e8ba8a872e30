"""Which connectors the settings enable, built with one retry policy."""

from __future__ import annotations

from connectors.base import Connector
from connectors.retry import RetryPolicy
from models.errors import ConfigError
from models.settings import Settings

SOURCES = ("salesforce", "hubspot")


def retry_policy(settings: Settings) -> RetryPolicy:
    s = settings.sync
    return RetryPolicy(max_retries=s.max_retries, backoff_base_s=s.backoff_base_s, backoff_max_s=s.backoff_max_s)


def enabled_sources(settings: Settings, only: str | None = None) -> list[str]:
    enabled = [name for name in SOURCES if getattr(settings, name).enabled]
    if only is not None:
        if only not in enabled:
            raise ConfigError(
                f"source {only} is not enabled; set SALESPULSE_{only.upper()}__ENABLED=true",
                source="settings",
                key=f"{only}.enabled",
            )
        return [only]
    if not enabled:
        raise ConfigError(
            "no source is enabled; set [salesforce] enabled = true or [hubspot] enabled = true",
            source="settings",
            key="salesforce.enabled",
        )
    return enabled


def build_connector(name: str, settings: Settings, policy: RetryPolicy | None = None) -> Connector:
    policy = policy or retry_policy(settings)
    if name == "salesforce":
        from connectors.salesforce import SalesforceConnector

        return SalesforceConnector(settings.salesforce, policy, reporting_currency=settings.company.reporting_currency)
    from connectors.hubspot import HubSpotConnector

    return HubSpotConnector(settings.hubspot, policy, default_currency=settings.company.reporting_currency)
