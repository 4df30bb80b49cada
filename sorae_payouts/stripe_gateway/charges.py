"""Lookups of the Stripe objects that fund a platform: charges (`ch_...`) and top-ups (`tu_...`).

The engine records a program's funding from such objects; before trusting a record it reads the object
back from Stripe with the same key the payouts use, so a charge of another platform account (invisible
to this key: Stripe answers 404 `resource_missing`, as for an id that never existed) reads as None.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import stripe

from sorae_payouts.stripe_gateway.errors import GatewayConfigurationError


@dataclass(frozen=True)
class ChargeRecord:
    id: str
    amount_minor: int
    currency: str  # lowercase, as Stripe answers it
    status: str  # succeeded | pending | failed
    paid: bool
    captured: bool
    created: int  # unix seconds
    amount_refunded: int = 0

    @property
    def charge_id(self) -> str:
        return self.id


@dataclass(frozen=True)
class TopupRecord:
    id: str
    amount_minor: int
    currency: str
    status: str  # canceled | failed | pending | reversed | succeeded
    created: int

    @property
    def topup_id(self) -> str:
        return self.id


def charge_record(charge: Any) -> ChargeRecord:
    data = charge.to_dict()
    return ChargeRecord(
        data["id"],
        int(data["amount"]),
        str(data["currency"]).lower(),
        str(data["status"]),
        bool(data.get("paid")),
        bool(data.get("captured")),
        int(data["created"]),
        int(data.get("amount_refunded") or 0),
    )


def topup_record(topup: Any) -> TopupRecord:
    data = topup.to_dict()
    return TopupRecord(
        data["id"], int(data["amount"]), str(data["currency"]).lower(), str(data["status"]), int(data["created"])
    )


class FundingLookups:
    """`charge()` and `topup()` of `StripeGateway` (which provides `client` and `_acquire`)."""

    client: stripe.StripeClient
    _acquire: Callable[[str], None]

    def charge(self, charge_id: str) -> ChargeRecord | None:
        """GET /v1/charges/{id}; None when this platform account has no such charge."""
        return self._lookup("charges.retrieve", self.client.v1.charges.retrieve, charge_id, charge_record)

    def topup(self, topup_id: str) -> TopupRecord | None:
        """GET /v1/topups/{id}; None when this platform account has no such top-up."""
        return self._lookup("topups.retrieve", self.client.v1.topups.retrieve, topup_id, topup_record)

    def _lookup(self, kind: str, retrieve: Callable[[str], Any], object_id: str, convert: Callable[[Any], Any]):
        self._acquire(kind)
        try:
            return convert(retrieve(object_id))
        except stripe.AuthenticationError as exc:
            raise GatewayConfigurationError("Stripe rejected the API key (401); check STRIPE_API_KEY") from exc
        except stripe.InvalidRequestError as exc:
            if exc.http_status == 404 and exc.code == "resource_missing":
                return None
            raise
