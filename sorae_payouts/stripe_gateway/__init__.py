"""The Stripe boundary: the only code that talks to Stripe, always through the official SDK.

`StripeGateway` wraps `stripe.StripeClient`; `STRIPE_API_BASE` points the same code at real Stripe
(unset), at the project's sandbox (`sorae_sandbox`) or at any Stripe-compatible mock.
`dispositions` is the one table deciding what each Stripe error means for a transfer attempt.
"""

from sorae_payouts.stripe_gateway.charges import ChargeRecord, TopupRecord
from sorae_payouts.stripe_gateway.error_codes import Disposition, classify
from sorae_payouts.stripe_gateway.gateway import (
    AccountReadiness,
    GatewayConfig,
    StripeGateway,
    TransferOutcome,
    TransferRecord,
    TransferRequest,
    dashboard_url,
)
from sorae_payouts.stripe_gateway.live import LIVE_PAYOUTS_SETTING, LivePayoutsRefused, demo_refusal, is_live_key

__all__ = [
    "LIVE_PAYOUTS_SETTING",
    "AccountReadiness",
    "ChargeRecord",
    "Disposition",
    "GatewayConfig",
    "LivePayoutsRefused",
    "StripeGateway",
    "TopupRecord",
    "TransferOutcome",
    "TransferRecord",
    "TransferRequest",
    "classify",
    "dashboard_url",
    "demo_refusal",
    "is_live_key",
]
