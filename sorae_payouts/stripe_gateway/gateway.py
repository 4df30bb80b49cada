"""`StripeGateway`: transfers, account readiness, balance and lookups (transfers, and the charges and
top-ups that fund the platform: `funding.py`) through `stripe.StripeClient`.

Every network attempt waits on the client-side rate limiter (in the SDK's HTTP client, so the SDK's own
retries too) and every call is counted per kind (`request_counts`, what the benchmark reports). The
limiter is the in-process `TokenBucket` unless the caller plugs in another one (`limiter=`, e.g.
`SharedRateLimiter`, shared through the ledger by every process paying from the same Stripe account;
`share_rate_limit` switches to it once the paying account is known). Transfers carry
the caller's idempotency key (never an SDK-generated one: that key would live only in memory and die
with a crashed process). With a live key, no transfer is created before `authorize_payouts` applied
the live-money rule (`stripe_gateway.live`).
"""

from __future__ import annotations

import os
import re
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast
from urllib.parse import urlsplit

import stripe

from sorae_payouts.stripe_gateway.charges import FundingLookups
from sorae_payouts.stripe_gateway.error_codes import ClassifiedError, Disposition, classify
from sorae_payouts.stripe_gateway.errors import GatewayConfigurationError
from sorae_payouts.stripe_gateway.live import (
    LivePayoutsRefused,
    is_live_key,
    live_payout_announcement,
    require_live_payouts_allowed,
)
from sorae_payouts.stripe_gateway.rate_limit import RateLimiter, TokenBucket
from sorae_payouts.stripe_gateway.readiness import AccountReadiness, readiness_of

if TYPE_CHECKING:  # the SDK's typed shapes, for the type checker only
    from stripe._base_address import BaseAddresses
    from stripe.params import TransferCreateParams


@dataclass(frozen=True)
class GatewayConfig:
    api_key: str
    api_base: str | None = None  # None: real Stripe
    max_network_retries: int = 2
    timeout_seconds: float = 30.0
    rate_limit_per_second: float = 20.0
    key_source: str = "STRIPE_API_KEY"  # where the key was read from (named in refusals, never the key)

    def __repr__(self) -> str:  # never print the key
        return f"GatewayConfig(api_base={self.api_base!r}, rate_limit_per_second={self.rate_limit_per_second})"


@dataclass(frozen=True)
class TransferRequest:
    amount_minor: int
    currency: str
    destination: str
    transfer_group: str
    description: str
    metadata: dict[str, str]
    # A charge (`ch_...`) of the paying account whose funds pay this transfer: Stripe then refuses a
    # currency other than the charge's and a total above the charge's amount. Sent only when set.
    source_transaction: str | None = None


@dataclass(frozen=True)
class TransferRecord:
    transfer_id: str
    amount_minor: int
    currency: str
    destination: str
    transfer_group: str | None
    metadata: dict[str, str]
    reversed: bool = False
    amount_reversed: int = 0
    source_transaction: str | None = None


@dataclass(frozen=True)
class TransferOutcome:
    disposition: Disposition
    transfer: TransferRecord | None = None
    request_id: str | None = None
    error: ClassifiedError | None = None
    replayed: bool = False


@dataclass(frozen=True)
class ReversalOutcome:
    """The answer to POST /v1/transfers/{id}/reversals: a reversal id, or a classified error."""

    disposition: Disposition
    reversal_id: str | None = None
    amount_minor: int = 0
    request_id: str | None = None
    error: ClassifiedError | None = None


def dashboard_url(transfer_id: str, api_key_is_test: bool) -> str:
    prefix = "https://dashboard.stripe.com/test" if api_key_is_test else "https://dashboard.stripe.com"
    return f"{prefix}/connect/transfers/{transfer_id}"


def _record(transfer) -> TransferRecord:
    # stripe-python 16 objects are not dicts: read optional fields from the plain-dict form.
    data = transfer.to_dict()
    return TransferRecord(
        data["id"],
        int(data["amount"]),
        data["currency"],
        str(data["destination"]),
        data.get("transfer_group"),
        dict(data.get("metadata") or {}),
        bool(data.get("reversed")),
        int(data.get("amount_reversed") or 0),
        data.get("source_transaction"),
    )


LIST_PAGE_SIZE = 100  # objects per page of a Stripe list (its maximum): one request each


# Every Stripe request that moves money: a transfer, its reversal, a payout, a refund, a top-up, a charge.
# They all pass the one live-money gate (`StripeGateway._money_gate`), in the HTTP client every SDK call of
# the gateway goes through, so a gateway method added later cannot move live money without it either
# (test_live_money_gate.py enumerates the gateway's calls against this list).
MONEY_MOVING_REQUESTS: tuple[tuple[str, re.Pattern], ...] = tuple(
    ("post", re.compile(pattern))
    for pattern in (
        r"/v1/transfers",
        r"/v1/transfers/[^/]+/reversals",
        r"/v1/payouts",
        r"/v1/refunds",
        r"/v1/topups",
        r"/v1/charges",
        r"/v1/application_fees/[^/]+/refunds",
    )
)


def moves_money(method: str, url: str) -> bool:
    path = urlsplit(url).path
    return any(method.lower() == m and pattern.fullmatch(path) for m, pattern in MONEY_MOVING_REQUESTS)


class _RateLimitedRequestsClient(stripe.RequestsClient):
    """The SDK's HTTP client, waiting on the gateway's limiter right before each network attempt, and
    the one live-money gate: a request that moves money is refused here, before the wire, unless the
    gateway allows it (`money_gate`).

    Here rather than around the SDK call: the SDK's own retries (`max_network_retries`, on connection
    errors, 409 and 429) are requests Stripe counts against the account's limit, and they go through
    `request` one by one. It also leaves only the HTTP send between the reserved slot and the wire,
    not the SDK's encoding of the parameters: the slots' spacing is what reaches Stripe."""

    def __init__(self, acquire, money_gate, **kwargs):
        super().__init__(**kwargs)
        self._acquire_slot = acquire
        self._money_gate = money_gate

    def request(self, method, url, headers, post_data=None):
        if moves_money(method, url):
            self._money_gate(urlsplit(url).path)
        self._acquire_slot()
        return super().request(method, url, headers, post_data)


class StripeGateway(FundingLookups):
    """The one way this project talks to Stripe."""

    def __init__(self, config: GatewayConfig, limiter: RateLimiter | None = None):
        """`limiter`: what every request waits on; default an in-process `TokenBucket` at
        `config.rate_limit_per_second`. A limiter with a `paying_account` attribute (`SharedRateLimiter`)
        must name the account the key belongs to: `paying_account()` refuses otherwise."""
        self.config = config
        self.test_mode = config.api_key.startswith(("sk_test_", "rk_test_"))
        self.live = is_live_key(config.api_key)
        self.key_source = config.key_source
        self._live_authorized = False
        self._paying_account: str | None = None
        self.limiter: RateLimiter = limiter if limiter is not None else TokenBucket(config.rate_limit_per_second)
        self.request_counts: Counter[str] = Counter()
        self._count_lock = threading.Lock()
        base: BaseAddresses | None = {"api": config.api_base} if config.api_base else None
        self.client = stripe.StripeClient(
            config.api_key,
            base_addresses=base,
            max_network_retries=config.max_network_retries,
            http_client=_RateLimitedRequestsClient(
                lambda: self.limiter.acquire(), self._money_gate, timeout=config.timeout_seconds
            ),
        )

    def _acquire(self, kind: str) -> None:
        """Every call: one count (the limiter is waited on per network attempt, in the HTTP client)."""
        with self._count_lock:
            self.request_counts[kind] += 1

    def paying_account(self) -> str:
        """The platform account behind the API key (GET /v1/account), fetched once per gateway: the
        account that pays, part of every idempotency key."""
        if self._paying_account is None:
            self._acquire("account.retrieve_current")
            try:
                account = str(self.client.v1.accounts.retrieve_current().id)
            except stripe.AuthenticationError as exc:
                raise GatewayConfigurationError("Stripe rejected the API key (401); check STRIPE_API_KEY") from exc
            keyed_by = getattr(self.limiter, "paying_account", None)
            if keyed_by is not None and keyed_by != account:
                # Scheduling under another account's limit would let this account exceed its own.
                raise GatewayConfigurationError(
                    f"the rate limiter is keyed by paying account {keyed_by}, but the API key belongs to "
                    f"{account}: check the program's paying account"
                )
            self._paying_account = account
        return self._paying_account

    def share_rate_limit(self, engine) -> RateLimiter:
        """From now on, wait on the ledger-wide schedule of this key's paying account (at
        `config.rate_limit_per_second`), shared with every process that pays from that account. Learning
        the account costs one GET /v1/account, made through the limiter in place before the switch;
        pass `limiter=SharedRateLimiter(...)` to the constructor when the account id is known already,
        so that request is scheduled too."""
        from sorae_payouts.stripe_gateway.shared_rate_limit import SharedRateLimiter  # SQL only when shared

        self.limiter = SharedRateLimiter(engine, self.paying_account(), self.config.rate_limit_per_second)
        return self.limiter

    def require_live_payouts_allowed(self) -> None:
        """Raise `LivePayoutsRefused` for a live key without SORAE_LIVE_PAYOUTS=1 (no request made)."""
        require_live_payouts_allowed(self.config.api_key, self.key_source)

    def authorize_payouts(self, batch_id: str, totals: dict[str, tuple[int, int]]) -> str | None:
        """The live-money rule, before a run's first request: a live key refuses (`LivePayoutsRefused`)
        unless SORAE_LIVE_PAYOUTS=1; then returns what to announce (account, batch, totals per
        currency as (count, minor)). None for a test key."""
        self.require_live_payouts_allowed()  # refuse before any request is made
        announcement = live_payout_announcement(self.config.api_key, self.paying_account(), batch_id, totals)
        self._live_authorized = True
        return announcement

    def _money_gate(self, path: str) -> None:
        """The one live-money gate, for every request that moves money (`MONEY_MOVING_REQUESTS`): with a live
        key, SORAE_LIVE_PAYOUTS=1 must be set, and a run must have announced what it pays
        (`authorize_payouts`) before its first live transfer. Refuses before anything is sent."""
        if not self.live:
            return
        require_live_payouts_allowed(self.config.api_key, self.key_source)
        if path == "/v1/transfers" and not self._live_authorized:
            raise LivePayoutsRefused("live transfer refused: the run did not pass authorize_payouts; nothing was sent")

    def create_transfer(self, request: TransferRequest, idempotency_key: str) -> TransferOutcome:
        """POST /v1/transfers with our idempotency key; errors become a classified outcome."""
        self._acquire("transfers.create")
        params = {
            "amount": request.amount_minor,
            "currency": request.currency,
            "destination": request.destination,
            "transfer_group": request.transfer_group,
            "description": request.description,
            "metadata": request.metadata,
        }
        if request.source_transaction is not None:
            params["source_transaction"] = request.source_transaction
        try:
            transfer = self.client.v1.transfers.create(
                params=cast("TransferCreateParams", params), options={"idempotency_key": idempotency_key}
            )
        except stripe.AuthenticationError as exc:
            raise GatewayConfigurationError("Stripe rejected the API key (401); check STRIPE_API_KEY") from exc
        except stripe.StripeError as exc:
            classified = classify(exc)
            return TransferOutcome(classified.disposition, request_id=classified.request_id, error=classified)
        response = transfer.last_response
        return TransferOutcome(
            Disposition.POSTED,
            _record(transfer),
            response.request_id if response else None,
            replayed=bool(response and response.headers.get("Idempotent-Replayed") == "true"),
        )

    def reverse_transfer(
        self, transfer_id: str, amount_minor: int, idempotency_key: str, metadata: dict[str, str]
    ) -> ReversalOutcome:
        """POST /v1/transfers/{id}/reversals for `amount_minor`, with our idempotency key."""
        self._acquire("transfers.reversals.create")
        try:
            reversal = self.client.v1.transfers.reversals.create(
                transfer_id,
                params={"amount": amount_minor, "metadata": metadata},
                options={"idempotency_key": idempotency_key},
            )
        except stripe.AuthenticationError as exc:
            raise GatewayConfigurationError("Stripe rejected the API key (401); check STRIPE_API_KEY") from exc
        except stripe.StripeError as exc:
            classified = classify(exc)
            return ReversalOutcome(classified.disposition, request_id=classified.request_id, error=classified)
        response = reversal.last_response
        return ReversalOutcome(
            Disposition.POSTED, reversal.id, int(reversal.amount), response.request_id if response else None
        )

    def transfer(self, transfer_id: str) -> TransferRecord:
        """GET /v1/transfers/{id}: the transfer with its current reversal state."""
        self._acquire("transfers.retrieve")
        return _record(self.client.v1.transfers.retrieve(transfer_id))

    def account_readiness(self, account_id: str) -> AccountReadiness:
        self._acquire("accounts.retrieve")
        try:
            account = self.client.v1.accounts.retrieve(account_id)
        except stripe.AuthenticationError as exc:
            raise GatewayConfigurationError("Stripe rejected the API key (401); check STRIPE_API_KEY") from exc
        except (stripe.PermissionError, stripe.InvalidRequestError) as exc:
            # Stripe answers an unknown account, or one not connected to this platform, with 403
            # permission_error / account_invalid (PermissionError); 404 resource_missing is kept for
            # older API versions and mocks. Either way: a hold with a plain reason, never a crash.
            # (stripe-python sets `code` on InvalidRequestError only; PermissionError keeps it in `error`.)
            code = exc.code or (exc.error.code if exc.error is not None else None)
            if exc.http_status in (403, 404) and code in ("account_invalid", "resource_missing"):
                return AccountReadiness(account_id, exists=False, error_code=code)
            raise
        return readiness_of(account)

    def all_account_readiness(self) -> Iterator[AccountReadiness]:
        """Every connected account of the platform, 100 per request (cheaper than one GET each)."""
        return map(readiness_of, self._pages(self.client.v1.accounts.list, {"limit": LIST_PAGE_SIZE}, "accounts.list"))

    def available_balance(self) -> dict[str, int]:
        self._acquire("balance.retrieve")
        balance = self.client.v1.balance.retrieve()
        return {entry.currency: int(entry.amount) for entry in balance.available}

    def transfers(
        self,
        transfer_group: str | None,
        destination: str | None = None,
        created_since: int | None = None,
        source_transaction: str | None = None,
    ) -> Iterator[TransferRecord]:
        """All transfers of a group and/or to one destination and/or created at or after a unix time,
        paging 100 at a time; `source_transaction` keeps those paid from that charge. Stripe cannot
        filter on it (GET /v1/transfers has no such parameter), so it filters what the other filters
        list: give a group or a time too, or every transfer of the account is read."""
        params: dict = {"limit": LIST_PAGE_SIZE}
        if created_since is not None:
            params["created"] = {"gte": created_since}
        if transfer_group:
            params["transfer_group"] = transfer_group
        if destination:
            params["destination"] = destination
        records = map(_record, self._pages(self.client.v1.transfers.list, params, "transfers.list"))
        if source_transaction is None:
            return records
        return (r for r in records if r.source_transaction == source_transaction)

    def _pages(self, list_call, params: dict, kind: str) -> Iterator:
        """Every object of a Stripe list endpoint, following `starting_after`, each page rate-limited."""
        params = dict(params)
        while True:
            self._acquire(kind)
            page = list_call(params=params)
            yield from page.data
            if not page.has_more or not page.data:
                return
            params["starting_after"] = page.data[-1].id


def config_from_environment() -> GatewayConfig:
    """STRIPE_API_KEY (required), STRIPE_API_BASE (optional: sandbox or mock), SORAE_STRIPE_RATE_LIMIT."""
    key = os.environ.get("STRIPE_API_KEY")
    if not key:
        raise GatewayConfigurationError(
            "STRIPE_API_KEY is not set: export a Stripe secret key (sk_test_... for "
            "test mode, any sk_test_ key for the local sandbox)"
        )
    return GatewayConfig(
        key,
        os.environ.get("STRIPE_API_BASE") or None,
        rate_limit_per_second=float(os.environ.get("SORAE_STRIPE_RATE_LIMIT", "20")),
    )
