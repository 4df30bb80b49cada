"""Whether a connected account can receive transfers now, as read from Stripe's account object."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class AccountReadiness:
    account_id: str
    exists: bool
    transfers_capability: str | None = None
    payouts_enabled: bool = False
    disabled_reason: str | None = None
    currently_due: list[str] = field(default_factory=list)
    error_code: str | None = None  # Stripe's code when the account could not be read at all

    @property
    def ready(self) -> bool:
        return self.exists and self.transfers_capability == "active" and self.payouts_enabled

    @property
    def hold_reason(self) -> str | None:
        if not self.exists:
            return (
                f"connected account {self.account_id} not found in Stripe, or not connected to this platform "
                f"({self.error_code or 'account_invalid'}): check the affiliate's stripe_account_id"
            )
        if self.transfers_capability != "active":
            return f"transfers capability is {self.transfers_capability or 'missing'}"
        if not self.payouts_enabled:
            return f"payouts disabled ({self.disabled_reason or 'requirements due'})"
        return None


def readiness_of(account) -> AccountReadiness:
    data = account.to_dict()
    capabilities = data.get("capabilities") or {}
    requirements = data.get("requirements") or {}
    return AccountReadiness(
        data["id"],
        True,
        capabilities.get("transfers"),
        bool(data.get("payouts_enabled")),
        requirements.get("disabled_reason"),
        list(requirements.get("currently_due") or []),
    )
