"""Who pays a program: Sorae's platform account, or the merchant's own Stripe platform account.

A program names its paying account by a reference, never by a key (`program.paying_account_ref`):
- None: Sorae's platform account, the key of STRIPE_API_KEY (`GatewayConfig.api_key`);
- `env:VAR`: the key is the value of the environment variable VAR of the process that pays;
- `secrets:<entry>`: the key is the string under <entry> in the JSON object file named by
  SORAE_SECRETS_FILE (a mounted Kubernetes secret, a file readable by the service user only).
The key is read when a gateway is built, kept in that gateway's config only, and never written to the
ledger, Dagster metadata, logs or exceptions: every error here names the reference, never a value.

A program paying from its own account has its own platform account at Stripe: its own connected
accounts, balance, idempotency keys and rate limit. Its gateway has the same API base, timeouts and
limits as the platform's (`program_gateway_config`), another key; the live-money rule
(`stripe_gateway.live`, SORAE_LIVE_PAYOUTS) applies to that key like to any other.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import threading

from sorae_payouts.registry.account_facts import (
    PayingAccountError,
    check_platform_account,
    check_program_account,
)
from sorae_payouts.registry.programs import Program, get_program
from sorae_payouts.stripe_gateway import GatewayConfig, StripeGateway
from sorae_payouts.stripe_gateway.live import require_live_payouts_allowed
from sorae_payouts.stripe_gateway.rate_limit import RateLimiter

SECRETS_FILE_SETTING = "SORAE_SECRETS_FILE"
SHARED_LIMIT_SETTING = "SORAE_STRIPE_SHARED_LIMIT"
# Secret and restricted keys, test or live: a publishable key (pk_) cannot create transfers.
_API_KEY = re.compile(r"(sk|rk)_(test|live)_\S+")


def resolve_api_key(program: Program, platform_api_key: str) -> str:
    """The secret key that pays `program`: the platform's for a program without a reference, else the
    value behind its `env:` or `secrets:` reference."""
    ref = program.paying_account_ref
    if ref is None:
        return platform_api_key
    kind, _, name = ref.partition(":")
    if kind == "env":
        value = os.environ.get(name)
        if value is None:
            raise PayingAccountError(
                f"program {program.program_id} pays from {ref}: the environment variable {name} "
                "is not set in this process"
            )
    elif kind == "secrets":
        value = _secrets_entry(program.program_id, ref, name)
    else:
        raise PayingAccountError(
            f"program {program.program_id}: paying account reference {ref!r} is neither env:VAR nor secrets:<entry>"
        )
    if not isinstance(value, str) or not _API_KEY.fullmatch(value.strip()):
        raise PayingAccountError(
            f"program {program.program_id} pays from {ref}: its value is not a Stripe secret "
            "key (sk_test_/sk_live_/rk_test_/rk_live_...); the value is not shown"
        )
    return value.strip()


def _secrets_entry(program_id: str, ref: str, entry: str):
    path = os.environ.get(SECRETS_FILE_SETTING)
    if not path:
        raise PayingAccountError(
            f"program {program_id} pays from {ref}: {SECRETS_FILE_SETTING} is not set (it names "
            "the JSON file holding the secrets)"
        )
    try:
        with open(path, encoding="utf-8") as file:
            secrets = json.load(file)
    except FileNotFoundError:
        raise PayingAccountError(
            f"program {program_id} pays from {ref}: the secrets file {path} ({SECRETS_FILE_SETTING}) does not exist"
        ) from None
    except OSError as exc:
        raise PayingAccountError(
            f"program {program_id} pays from {ref}: the secrets file {path} cannot be read ({exc.__class__.__name__})"
        ) from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        # No detail: a parser message may quote the file's content.
        raise PayingAccountError(
            f"program {program_id} pays from {ref}: the secrets file {path} is not valid JSON"
        ) from None
    if not isinstance(secrets, dict):
        raise PayingAccountError(
            f"program {program_id} pays from {ref}: the secrets file {path} must hold a JSON object (entry name -> key)"
        )
    if entry not in secrets:
        raise PayingAccountError(
            f"program {program_id} pays from {ref}: the secrets file {path} has no entry {entry!r}"
        )
    return secrets[entry]


def program_gateway_config(base: GatewayConfig, program: Program) -> GatewayConfig:
    """The platform's gateway config with the program's key: same API base, retries, timeout, limit."""
    key = resolve_api_key(program, base.api_key)
    if key == base.api_key:
        return base
    return dataclasses.replace(base, api_key=key, key_source=program.paying_account_ref or base.key_source)


def shares_rate_limit() -> bool:
    """Whether gateways built with a ledger engine wait on the ledger-wide schedule of their paying
    account (`SharedRateLimiter`): yes unless SORAE_STRIPE_SHARED_LIMIT=0 (one process alone, or a test
    of the in-process bucket)."""
    return os.environ.get(SHARED_LIMIT_SETTING, "1").strip() != "0"


def program_gateway(
    base: GatewayConfig, program: Program, limiter: RateLimiter | None = None, *, engine=None
) -> StripeGateway:
    """A gateway that pays `program`. `limiter`: as `StripeGateway`'s (default an in-process bucket; a
    shared limiter must be keyed by the program's paying account). Given the ledger's `engine` (and no
    limiter), the gateway learns its paying account (GET /v1/account) and then shares that account's
    limit with every process paying from it (`shares_rate_limit`): two runs on one account never add
    up to twice its limit."""
    gateway = StripeGateway(program_gateway_config(base, program), limiter)
    if engine is not None and limiter is None and shares_rate_limit():
        gateway.share_rate_limit(engine)
    return gateway


class ProgramGateways:
    """ "The program, then its gateway", written once for the CLI, the Dagster resources and the demo.

    `for_program(program)` is the gateway of the account that pays it: the platform key (`base`) or the key
    behind its reference, resolved now. One gateway per key (one client, one GET /v1/account for its
    paying account id), reused for every program paying from that key. Given the ledger's `engine`, each
    gateway waits on its paying account's ledger-wide rate schedule (`shares_rate_limit`), so every
    process paying from one account stays under its limit together. Thread-safe."""

    def __init__(self, base: GatewayConfig, engine=None, *, shared_rate_limit: bool | None = None):
        self.base, self.engine = base, engine
        self.shared = (shares_rate_limit() if shared_rate_limit is None else shared_rate_limit) and engine is not None
        self._by_key: dict[str, StripeGateway] = {}
        self._checked: set[tuple[str, str]] = set()  # (program, key) whose account was checked in this ledger
        self._lock = threading.Lock()

    def for_program(self, program: Program) -> StripeGateway:
        """The program's gateway, once its key's account is checked against the one recorded for it (or
        recorded, on its first use): a key of another account is refused (`account_facts`)."""
        config = program_gateway_config(self.base, program)
        gateway = self._gateway(config)
        if self.engine is not None and (program.program_id, config.api_key) not in self._checked:
            check_program_account(self.engine, program, gateway.paying_account())
            self._checked.add((program.program_id, config.api_key))
            if config.api_key == self.base.api_key:  # the platform key itself: its account is the platform's
                self.platform_account()
        return gateway

    def platform_account(self) -> str:
        """The platform key's account id, checked against (or recorded as) this ledger's platform account."""
        account = self._gateway(self.base).paying_account()
        if self.engine is not None and ("", self.base.api_key) not in self._checked:
            check_platform_account(self.engine, account)
            self._checked.add(("", self.base.api_key))
        return account

    def _gateway(self, config: GatewayConfig) -> StripeGateway:
        with self._lock:
            gateway = self._by_key.get(config.api_key)
            if gateway is None:
                gateway = StripeGateway(config)
                if self.shared:
                    gateway.share_rate_limit(self.engine)
                self._by_key[config.api_key] = gateway
        return gateway

    def for_program_id(self, program_id: str) -> StripeGateway:
        """The gateway of a registered program (ProgramError for an unknown one)."""
        with self.engine.connect() as conn:
            program = get_program(conn, program_id)
        return self.for_program(program)  # outside the read: the account check may write (SQLite: one writer)


def require_program_gateway(program: Program, gateway: StripeGateway) -> None:
    """Refuse a gateway that does not hold the key of the program's own paying account: a merchant's
    affiliates are never paid from another account by mistake. (A program on the platform account is
    paid with whatever key the deployment's STRIPE_API_KEY is: nothing to compare here.)"""
    if program.paying_account_ref is None:
        return
    if gateway.config.api_key != resolve_api_key(program, gateway.config.api_key):
        raise PayingAccountError(
            f"program {program.program_id} pays from {program.paying_account_ref}, but the "
            "Stripe gateway given holds another key: build it with "
            "paying_accounts.program_gateway"
        )


def require_live_payouts_allowed_for(program: Program, gateway: StripeGateway) -> None:
    """The live-money rule for the key paying `program` (`LivePayoutsRefused` for a live key without
    SORAE_LIVE_PAYOUTS=1), naming where the key came from: STRIPE_API_KEY or the program's reference."""
    require_live_payouts_allowed(gateway.config.api_key, program.paying_account_ref or "STRIPE_API_KEY")
