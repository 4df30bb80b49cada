"""Errors of the Stripe boundary that are not about one transfer (those are `dispositions`)."""

from __future__ import annotations

from sorae_payouts.core.errors import PayoutRefused


class GatewayConfigurationError(PayoutRefused):
    """Stripe refused our credentials or configuration: stop, nothing can succeed."""
