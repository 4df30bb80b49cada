"""The Stripe gateway a CLI command uses for a program: the deployment's settings (STRIPE_API_BASE,
limits) with the key of the account that pays the program (`paying_accounts.resolve_api_key`)."""

from __future__ import annotations

import dataclasses

from sorae_payouts.programs import Program
from sorae_payouts.stripe_gateway.gateway import StripeGateway, config_from_environment


def gateway_for_program(program: Program) -> StripeGateway:
    from sorae_payouts.paying_accounts import resolve_api_key

    base = config_from_environment()
    return StripeGateway(dataclasses.replace(base, api_key=resolve_api_key(program, base.api_key)))
