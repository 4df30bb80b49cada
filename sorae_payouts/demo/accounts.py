"""Connected accounts for the demo: one Stripe account per onboarded demo affiliate.

Against the local sandbox an account requested with the `transfers` capability is active at once;
against real Stripe test mode it stays pending until onboarded (its items are then held, not failed).
Accounts are found again by `metadata.affiliate_id`, so re-running the demo reuses them.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import stripe


def ensure_demo_accounts(client: stripe.StripeClient, affiliates_csv: Path) -> int:
    """Give every affiliate that has an account id in the demo file a real connected account, and
    rewrite the file with those ids. Returns how many accounts were created."""
    frame = pd.read_csv(affiliates_csv, dtype=str, keep_default_na=False)
    existing: dict[str, str] = {}
    params: dict = {"limit": 100}
    while True:
        page = client.v1.accounts.list(params=params)
        for account in page.data:
            affiliate = (account.to_dict().get("metadata") or {}).get("affiliate_id")
            if affiliate:
                existing[affiliate] = account.id
        if not page.has_more or not page.data:
            break
        params["starting_after"] = page.data[-1].id
    created = 0
    ids = []
    for affiliate_id, email, current in zip(
        frame["affiliate_id"], frame["email"], frame["stripe_account_id"], strict=False
    ):
        if not current:
            ids.append("")  # not onboarded: the manifest carries their balance forward
            continue
        if affiliate_id not in existing:
            existing[affiliate_id] = client.v1.accounts.create(
                params={
                    "type": "express",
                    "country": "US",
                    "email": email,
                    "capabilities": {"transfers": {"requested": True}},
                    "metadata": {"affiliate_id": affiliate_id},
                }
            ).id
            created += 1
        ids.append(existing[affiliate_id])
    frame["stripe_account_id"] = ids
    frame.to_csv(affiliates_csv, index=False)
    return created
