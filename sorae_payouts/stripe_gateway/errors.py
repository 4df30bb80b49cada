"""Errors of the Stripe boundary that are not about one transfer (those are `dispositions`)."""

from __future__ import annotations


class GatewayConfigurationError(Exception):
    """Stripe refused our credentials or configuration: stop, nothing can succeed."""
