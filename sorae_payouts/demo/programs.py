"""The demo's three programs (merchants) and their money, as `sorae-payouts demo` sets them up.

- `acme`: pays from Sorae's platform account, funded by Stripe charges covering its whole batch.
- `bolt`: pays from the platform account too, funded by charges covering half of its batch: its
  execution is refused (`FundingShortfall`) and nothing of it is sent, while the others are paid.
- `cobalt`: pays from its own Stripe platform account (its key behind `env:SORAE_DEMO_COBALT_STRIPE_KEY`).

The same affiliate ids appear in every program (one person may be an affiliate of several merchants):
each program's `aff_0001` is its own record. Setting up twice changes nothing: programs, operators and
funding already recorded are kept as they are.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
import stripe

from sorae_payouts.ledger.sql import text
from sorae_payouts.registry.funding import list_funding, record_funding
from sorae_payouts.registry.programs import add_program, find_program

COBALT_KEY_SETTING = "SORAE_DEMO_COBALT_STRIPE_KEY"


@dataclass(frozen=True)
class DemoProgram:
    program_id: str
    name: str
    paying_account_ref: str | None
    funded_share: tuple[int, int] | None  # funding as a fraction of the batch; None: its own account's balance
    seed: int


DEMO_PROGRAMS = (
    DemoProgram("acme", "Acme Outdoor", None, (1, 1), 7),
    DemoProgram("bolt", "Bolt Bikes", None, (1, 2), 8),
    DemoProgram("cobalt", "Cobalt Coffee", f"env:{COBALT_KEY_SETTING}", None, 9),
)


def ensure_demo_programs(engine: sa.Engine, *, now: datetime) -> list[str]:
    """Register the demo's programs that are not registered yet; returns those it added."""
    added = []
    for demo in DEMO_PROGRAMS:
        with engine.connect() as conn:
            known = find_program(conn, demo.program_id) is not None
        if not known:
            add_program(
                engine,
                demo.program_id,
                name=demo.name,
                paying_account_ref=demo.paying_account_ref,
                added_by="demo",
                now=now,
            )
            added.append(demo.program_id)
    return added


def payable_totals(conn: sa.Connection, batch_id: str) -> dict[str, int]:
    """What the batch pays per currency (its pending items): what its funding must cover."""
    rows = conn.execute(
        text(
            "SELECT currency, SUM(amount_minor) FROM payout_item WHERE batch_id = :b "
            "AND status = 'pending' GROUP BY currency"
        ),
        {"b": batch_id},
    ).all()
    return {currency: int(total) for currency, total in rows}


def fund_demo_program(
    engine: sa.Engine, client: stripe.StripeClient, gateway, demo: DemoProgram, batch_id: str, *, now: datetime
) -> list[str]:
    """Charge the platform for the program's share of its batch (one charge per currency) and record
    each charge as the program's funding; nothing when it is already funded or pays from its own
    account. Returns the charge ids recorded."""
    if demo.funded_share is None:
        return []
    with engine.connect() as conn:
        if list_funding(conn, demo.program_id):
            return []
        totals = payable_totals(conn, batch_id)
    numerator, denominator = demo.funded_share
    recorded = []
    for currency, total in sorted(totals.items()):
        amount = total * numerator // denominator
        if amount <= 0:
            continue
        # `tok_bypassPending`: Stripe's test card whose funds are available at once (test mode and sandbox).
        charge = client.v1.charges.create(
            params={
                "amount": amount,
                "currency": currency,
                "source": "tok_bypassPending",
                "description": f"{demo.name}: affiliate payouts {batch_id}",
                "metadata": {"program_id": demo.program_id},
            }
        )
        record_funding(
            engine,
            gateway,
            demo.program_id,
            charge_id=charge.id,
            recorded_by="demo",
            now=now,
            note=f"demo: {numerator}/{denominator} of {batch_id}",
        )
        recorded.append(charge.id)
    return recorded
