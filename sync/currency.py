"""Converting amounts to the reporting currency with the rates from settings."""

from __future__ import annotations

from decimal import Decimal

from models.errors import SkippableError
from models.settings import CompanySettings

CENT = Decimal("0.01")


def to_reporting(amount: Decimal, currency: str, company: CompanySettings) -> Decimal:
    """``amount`` in ``currency`` expressed in the reporting currency, to the cent.

    A currency without a rate is an error for that record (quarantine), never a guess:
    a EUR deal silently counted as USD would skew every quota comparison.
    """
    if currency == company.reporting_currency:
        return amount.quantize(CENT)
    rate = company.fx_rates.get(currency)
    if rate is None:
        raise SkippableError(
            f"no exchange rate for {currency}; add {currency} = <rate> under [company.fx_rates]",
            currency=currency,
        )
    return (amount * rate).quantize(CENT)
