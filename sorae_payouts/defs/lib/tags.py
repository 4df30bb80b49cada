"""Run tags the engine sets and the instance's queue limits on (deploy/dagster.yaml): who asked, which
batch and manifest, which program, and which Stripe account pays (never a key)."""

from __future__ import annotations

import os

TAG_BATCH, TAG_HASH, TAG_OPERATOR = "sorae/batch_id", "sorae/manifest_hash", "sorae/operator"
TAG_PROGRAM, TAG_PAYING_ACCOUNT = "sorae/program", "sorae/paying_account"


class PayingAccounts:
    """The Stripe account id paying each program (GET /v1/account with the program's key), for the
    `sorae/paying_account` tag; one lookup per reference. When the key cannot be resolved here, the
    tag is the reference itself ("platform", "env:VAR"): never a key."""

    def __init__(self, stripe):
        self.stripe, self._ids = stripe, {}

    @classmethod
    def from_environment(cls) -> PayingAccounts:
        from sorae_payouts.defs.lib.resources import StripeResource

        key = os.environ.get("STRIPE_API_KEY")
        return cls(StripeResource(api_key=key, api_base=os.environ.get("STRIPE_API_BASE")) if key else None)

    def tag(self, program) -> str:
        ref = program.paying_account_ref or "platform"
        if ref not in self._ids:
            try:
                self._ids[ref] = self.stripe.program_gateway(program, None).paying_account() if self.stripe else ref
            except Exception:
                self._ids[ref] = ref
        return self._ids[ref]

    def tag_for(self, program_id: str) -> str:
        from sorae_payouts.ledger.database import create_ledger_engine
        from sorae_payouts.registry.programs import get_program

        engine = create_ledger_engine()
        try:
            with engine.connect() as conn:
                return self.tag(get_program(conn, program_id))
        finally:
            engine.dispose()
