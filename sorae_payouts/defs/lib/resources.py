"""Resources: the ledger database and the payout policy. Secrets come only from the environment."""

from __future__ import annotations

import os

import dagster as dg
import sqlalchemy as sa
from pydantic import PrivateAttr

from sorae_payouts.execution.pay_batch import ExecutionSettings
from sorae_payouts.ledger.database import create_ledger_engine, database_url, redact
from sorae_payouts.month_end.finalize import DEFAULT_HOLDING_DAYS
from sorae_payouts.month_end.manifest import (
    DEFAULT_DUAL_APPROVAL_OVER,
    DEFAULT_MINIMUM_PAYOUT,
    NEGATIVE_BALANCE_CARRY,
    PayoutPolicy,
)
from sorae_payouts.stripe_gateway import GatewayConfig, StripeGateway
from sorae_payouts.stripe_gateway.errors import GatewayConfigurationError


class LedgerResource(dg.ConfigurableResource):
    """The payout ledger. `database_url` comes from SORAE_DATABASE_URL (a `dg.EnvVar`, since a
    Postgres URL carries a password); unset, the embedded SQLite ledger in ./data is used."""

    database_url: str | None = None
    _engine: sa.Engine | None = PrivateAttr(default=None)

    @property
    def engine(self) -> sa.Engine:
        if self._engine is None:
            self._engine = create_ledger_engine(self.database_url)
        return self._engine

    @property
    def display_url(self) -> str:
        """The URL with its password hidden: safe for logs and metadata."""
        return redact(database_url(self.database_url))

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._engine is not None:
            self._engine.dispose()


class PayoutSettings(dg.ConfigurableResource):
    """Business rules an operator may tune: the holding window before a month can be finalized
    (late reversals), the minimum payout per currency, and the batch total per currency above which
    two different people must approve (amounts in major units, exact decimal strings). The last two
    are frozen into each batch when its manifest is built."""

    holding_days: int = DEFAULT_HOLDING_DAYS
    minimum_payout: dict[str, str] = dict(DEFAULT_MINIMUM_PAYOUT)
    dual_approval_over: dict[str, str] = dict(DEFAULT_DUAL_APPROVAL_OVER)
    # Negative balances: "carry" (default: deducted from later earnings) or "recover_by_reversal"
    # (reverse the affiliate's latest transfers up to the negative amount once the batch is approved).
    negative_balance: str = NEGATIVE_BALANCE_CARRY

    @property
    def policy(self) -> PayoutPolicy:
        return PayoutPolicy.from_major(self.minimum_payout, self.dual_approval_over, self.negative_balance)


def ledger_from_environment() -> LedgerResource:
    """The ledger resource as deployed: SORAE_DATABASE_URL through `dg.EnvVar` when set (resolved at
    run time, never written into run config), else the embedded SQLite default."""
    if os.environ.get("SORAE_DATABASE_URL"):
        return LedgerResource(database_url=dg.EnvVar("SORAE_DATABASE_URL"))
    return LedgerResource()


class StripeResource(dg.ConfigurableResource):
    """Stripe Connect through the official SDK. `api_key` from STRIPE_API_KEY (`dg.EnvVar`);
    `api_base` from STRIPE_API_BASE when set (the local sandbox or a Stripe-compatible mock), real
    Stripe otherwise. Client-side rate limit in requests/s per paying account (SORAE_STRIPE_RATE_LIMIT;
    Stripe allows 25/s per endpoint in test mode, so the default keeps headroom), shared through the
    ledger by every run paying from the same account unless `shared_rate_limit` is off
    (SORAE_STRIPE_SHARED_LIMIT=0)."""

    # None when STRIPE_API_KEY is not set: steps that never call Stripe (a month end with nothing to carry)
    # still run; a gateway asked for then is refused with one line (GatewayConfigurationError).
    api_key: str | None = None
    api_base: str | None = None
    max_network_retries: int = 2
    timeout_seconds: float = 30.0
    rate_limit_per_second: float = 20.0
    workers: int = 16
    shared_rate_limit: bool = True
    _gateways: dict = PrivateAttr(default_factory=dict)

    def gateway_config(self, api_key: str | None = None) -> GatewayConfig:
        if not (api_key or self.api_key):
            raise GatewayConfigurationError("STRIPE_API_KEY is not set: this step needs Stripe (set the platform key)")
        return GatewayConfig(
            api_key or self.api_key,
            self.api_base,
            self.max_network_retries,
            self.timeout_seconds,
            self.rate_limit_per_second,
        )

    def gateway(self) -> StripeGateway:
        """The platform account's gateway (STRIPE_API_KEY), with the in-process limiter."""
        return StripeGateway(self.gateway_config())

    def gateways(self, engine: sa.Engine | None):
        """The run's `paying_accounts.ProgramGateways` for this ledger: one gateway per paying key (one
        client, one GET /v1/account), waiting on the account's ledger-wide rate schedule unless
        `shared_rate_limit` is off. Keys are resolved at run time, never stored in config."""
        from sorae_payouts.registry.paying_accounts import ProgramGateways

        if id(engine) not in self._gateways:  # the schedule lives in that ledger: one set per ledger
            self._gateways[id(engine)] = ProgramGateways(
                self.gateway_config(), engine, shared_rate_limit=self.shared_rate_limit and engine is not None
            )
        return self._gateways[id(engine)]

    def program_gateway(self, program, engine: sa.Engine | None) -> StripeGateway:
        """The gateway of the account that pays `program` (see `gateways`); `engine` None only to learn the
        account id, never to pay."""
        return self.gateways(engine).for_program(program)

    def execution_settings(self) -> ExecutionSettings:
        return ExecutionSettings(workers=self.workers)


def stripe_from_environment() -> StripeResource:
    """The Stripe resource as deployed; nothing secret is read here, only resolved at run time."""
    from sorae_payouts.registry.paying_accounts import shares_rate_limit

    optional = {"api_base": dg.EnvVar("STRIPE_API_BASE")} if os.environ.get("STRIPE_API_BASE") else {}
    if os.environ.get("STRIPE_API_KEY"):  # resolved at run time (EnvVar), never written into run config
        optional["api_key"] = dg.EnvVar("STRIPE_API_KEY")
    return StripeResource(
        rate_limit_per_second=float(os.environ.get("SORAE_STRIPE_RATE_LIMIT", "20")),
        shared_rate_limit=shares_rate_limit(),
        workers=int(os.environ.get("SORAE_STRIPE_WORKERS", "16")),
        **optional,
    )
