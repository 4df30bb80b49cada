"""The payout manifest of a period: one payout item per affiliate and currency.

An item's amount is what the affiliate earned in the period (finalized commissions, net of in-period
adjustments and of clawbacks booked in the period) plus the balance carried in from the previous
batch. An item is `pending` (to be paid) when its amount reaches the currency's minimum payout;
otherwise it is `carried_forward` with a reason (`below_minimum`, `negative_balance`,
`zero_balance`, or `not_onboarded` for an affiliate without a Stripe connected account yet) and its
amount becomes the next batch's carried-in balance: an affiliate who onboards is paid in the first
batch built after onboarding, with nothing lost meanwhile. Items an executed earlier batch left unpaid
(failed or held) are closed and carried in too (`sorae_payouts.unpaid_carry`). Money never disappears
between batches: conservation is checked per currency (`sorae_payouts.audit`).

Batches are built in period order: a period's batch needs the batches of all earlier finalized periods
(their carried balances flow in), and a draft can be rebuilt only while no later batch exists. A draft
can be rebuilt at will; once approved, the manifest is frozen (database triggers) and rebuilding is a
no-op that says so.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import date, datetime

import sqlalchemy as sa

from sorae_payouts.finalize import is_finalized
from sorae_payouts.ledger.sql import as_date, case_map, text
from sorae_payouts.money import parse_minor
from sorae_payouts.periods import period_key
from sorae_payouts.unpaid_carry import CARRIED_UNPAID_SQL, UnpaidItemMoved, close_unpaid_items

DEFAULT_MINIMUM_PAYOUT = {"usd": "50.00", "eur": "50.00", "gbp": "50.00", "jpy": "5000"}
# A batch paying more than this in any currency needs two approvals by different people.
DEFAULT_DUAL_APPROVAL_OVER = {"usd": "100000.00", "eur": "100000.00", "gbp": "100000.00", "jpy": "15000000"}
NEGATIVE_BALANCE_CARRY, NEGATIVE_BALANCE_RECOVER = "carry", "recover_by_reversal"
NEGATIVE_BALANCE_POLICIES = (NEGATIVE_BALANCE_CARRY, NEGATIVE_BALANCE_RECOVER)


class ManifestError(Exception):
    """The manifest cannot be built now; the message says why and what to do."""


@dataclass(frozen=True)
class PayoutPolicy:
    """The rules a batch is built and approved under, frozen into the batch (and its hash).

    `minimum_minor`: per currency; below it, balances carry to the next period.
    `dual_approval_over_minor`: per currency; a batch paying more than this needs two approvers.
    """

    minimum_minor: dict[str, int] = field(default_factory=dict)
    default_minimum_minor: int = 1  # a currency without a configured minimum pays any positive amount
    dual_approval_over_minor: dict[str, int] = field(default_factory=dict)
    # What happens to an affiliate's negative balance: `carry` it (deducted from later earnings), or
    # `recover_by_reversal` (reverse their most recent posted transfers up to the negative amount).
    negative_balance: str = NEGATIVE_BALANCE_CARRY

    def __post_init__(self):
        if self.negative_balance not in NEGATIVE_BALANCE_POLICIES:
            raise ValueError(f"negative_balance must be one of {', '.join(NEGATIVE_BALANCE_POLICIES)}, "
                             f"not {self.negative_balance!r}")

    @classmethod
    def from_major(cls, minimums: dict[str, str], dual_approval_over: dict[str, str] | None = None,
                   negative_balance: str = NEGATIVE_BALANCE_CARRY) -> "PayoutPolicy":
        """Build from decimal strings in major units ({"usd": "50.00", "jpy": "5000"}), parsed exactly."""
        return cls({c.lower(): parse_minor(v, c.lower()) for c, v in minimums.items()}, 1,
                   {c.lower(): parse_minor(v, c.lower()) for c, v in (dual_approval_over or {}).items()},
                   negative_balance)

    def as_json(self) -> dict:
        return {"minimum_minor": dict(sorted(self.minimum_minor.items())),
                "default_minimum_minor": self.default_minimum_minor,
                "dual_approval_over_minor": dict(sorted(self.dual_approval_over_minor.items())),
                "negative_balance": self.negative_balance}


@dataclass
class CurrencyTotals:
    currency: str
    pending_count: int = 0
    pending_minor: int = 0
    carried_count: int = 0
    carried_minor: int = 0
    carried_in_minor: int = 0


@dataclass
class ManifestReport:
    batch_id: str
    period: date
    status: str
    manifest_hash: str
    item_count: int
    outcome: str  # "built", "rebuilt", "unchanged" (rebuilt to the same hash) or "frozen" (approved)
    totals: list[CurrencyTotals]


def batch_id_for(period: date) -> str:
    """Deterministic batch id; also the Stripe `transfer_group` of the batch's transfers."""
    return f"payout_{period_key(period)}"


_BUILD_ITEMS = """
INSERT INTO payout_item (batch_id, affiliate_id, currency, stripe_account_id, commission_count,
                         period_amount_minor, carried_in_minor, amount_minor, status, carry_reason)
SELECT :batch_id, t.affiliate_id, t.currency, a.stripe_account_id, t.cnt, t.earned, t.carried,
       t.earned + t.carried,
       CASE WHEN t.earned + t.carried >= {minimum} AND a.stripe_account_id IS NOT NULL
            THEN 'pending' ELSE 'carried_forward' END,
       CASE WHEN t.earned + t.carried < 0 THEN 'negative_balance'
            WHEN t.earned + t.carried = 0 THEN 'zero_balance'
            WHEN t.earned + t.carried < {minimum} THEN 'below_minimum'
            WHEN a.stripe_account_id IS NULL THEN 'not_onboarded'
            ELSE NULL END
FROM (
    SELECT affiliate_id, currency, SUM(cnt) AS cnt, SUM(earned) AS earned, SUM(carried) AS carried FROM (
        SELECT affiliate_id, currency, COUNT(*) AS cnt, SUM(amount_minor) AS earned, 0 AS carried
        FROM commission WHERE period = :period GROUP BY affiliate_id, currency
        UNION ALL
        SELECT affiliate_id, currency, 0, SUM(amount_minor), 0
        FROM commission_adjustment WHERE booked_period = :period GROUP BY affiliate_id, currency
        UNION ALL
        SELECT affiliate_id, currency, 0, 0, amount_minor
        FROM payout_item WHERE batch_id = :prev_batch_id AND status = 'carried_forward'
                           AND carry_reason IS NOT NULL AND amount_minor <> 0
        UNION ALL{carried_unpaid}
        UNION ALL
        SELECT affiliate_id, currency, 0, 0, SUM(amount_minor)
        FROM owed_again_carry WHERE batch_id = :batch_id GROUP BY affiliate_id, currency
    ) parts GROUP BY affiliate_id, currency
) t JOIN affiliate a ON a.affiliate_id = t.affiliate_id
"""

# The reviewed, frozen fields only: `status` moves during execution, while `carry_reason` (NULL for a
# payable item) already says which items are to be paid.
_ITEM_HASH_COLUMNS = ("affiliate_id", "currency", "stripe_account_id", "commission_count",
                      "period_amount_minor", "carried_in_minor", "amount_minor", "carry_reason")


def build_manifest(engine: sa.Engine, period: date, *, policy: PayoutPolicy, now: datetime) -> ManifestReport:
    """Create (or rebuild, while draft) the period's batch and its items, and compute the manifest hash."""
    batch_id = batch_id_for(period)
    with engine.begin() as conn:
        if not is_finalized(conn, period):
            raise ManifestError(f"period {period_key(period)} is not finalized; materialize "
                                f"finalized_commissions for it first")
        batch = conn.execute(text("SELECT status, manifest_hash FROM payout_batch WHERE period = :period"),
                             {"period": period}).first()
        if batch is not None and batch.status != "draft":
            return _report(conn, batch_id, period, "frozen")
        later = conn.execute(text("SELECT MIN(period) FROM payout_batch WHERE period > :period"),
                             {"period": period}).scalar_one_or_none()
        if later is not None:
            raise ManifestError(f"a batch for the later period {period_key(as_date(later))} exists; the draft "
                                f"of {period_key(period)} cannot be (re)built without breaking carried balances")
        missing = conn.execute(
            text("SELECT period FROM commission_period WHERE period < :period AND period NOT IN "
                 "(SELECT period FROM payout_batch) ORDER BY period"), {"period": period}).scalars().all()
        if missing:
            names = ", ".join(period_key(as_date(p)) for p in missing)
            raise ManifestError(f"build the manifests of earlier finalized periods first: {names}")
        prev_batch_id = conn.execute(
            text("SELECT batch_id FROM payout_batch WHERE period < :period ORDER BY period DESC LIMIT 1"),
            {"period": period}).scalar_one_or_none()
        old_hash = batch.manifest_hash if batch is not None else None
        if batch is None:
            conn.execute(
                text("INSERT INTO payout_batch (batch_id, period, status, manifest_hash, item_count, policy, "
                     "created_at, built_at) VALUES (:batch_id, :period, 'draft', '', 0, :policy, :now, :now)"),
                {"batch_id": batch_id, "period": period, "policy": json.dumps(policy.as_json()), "now": now})
        else:
            conn.execute(text("DELETE FROM payout_item WHERE batch_id = :batch_id"), {"batch_id": batch_id})
        try:
            close_unpaid_items(conn, batch_id, period, now=now)
        except UnpaidItemMoved as exc:
            raise ManifestError(str(exc)) from exc
        carry_owed_again(conn, batch_id, period)
        minimum, params = case_map("t.currency", policy.minimum_minor, policy.default_minimum_minor, "min")
        conn.execute(text(_BUILD_ITEMS.format(minimum=minimum, carried_unpaid=CARRIED_UNPAID_SQL)),
                     {**params, "batch_id": batch_id, "period": period, "prev_batch_id": prev_batch_id or ""})
        manifest_hash, item_count = compute_manifest_hash(conn, batch_id, period, policy.as_json())
        conn.execute(
            text("UPDATE payout_batch SET manifest_hash = :h, item_count = :n, built_at = :now, policy = :policy "
                 "WHERE batch_id = :batch_id"),
            {"h": manifest_hash, "n": item_count, "now": now, "policy": json.dumps(policy.as_json()),
             "batch_id": batch_id})
        outcome = "built" if batch is None else ("unchanged" if old_hash == manifest_hash else "rebuilt")
        return _report(conn, batch_id, period, outcome)


# Carried-in source "owed again": reversed money an operator decided is owed again
# (`operations.reversals`), not yet carried by any batch, from a month before this one. The rows tie
# each decision to the one batch that carries it (unique per decision); a draft rebuild re-derives them.
_CARRY_OWED_AGAIN = """
INSERT INTO owed_again_carry (decision_pk, batch_id, affiliate_id, currency, amount_minor)
SELECT d.decision_pk, :batch_id, d.affiliate_id, d.currency, d.amount_minor
FROM reversal_decision d
JOIN payout_item ri ON ri.payout_item_id = d.payout_item_id
JOIN payout_batch rb ON rb.batch_id = ri.batch_id
WHERE d.decision = 'owe_again' AND rb.period < :period
  AND NOT EXISTS (SELECT 1 FROM owed_again_carry o WHERE o.decision_pk = d.decision_pk)
"""


def carry_owed_again(conn: sa.Connection, batch_id: str, period: date) -> None:
    """Carry every pending owed-again decision into this (draft) batch: the manifest's items then add
    them to the affiliate's carried-in balance (`_BUILD_ITEMS`)."""
    conn.execute(text("DELETE FROM owed_again_carry WHERE batch_id = :batch_id"), {"batch_id": batch_id})
    conn.execute(text(_CARRY_OWED_AGAIN), {"batch_id": batch_id, "period": period})


def owed_again_lines(conn: sa.Connection, batch_id: str) -> list[dict]:
    """One line per owed-again amount carried into the batch, saying why (for the manifest review)."""
    rows = conn.execute(text(
        "SELECT o.affiliate_id, o.currency, o.amount_minor, d.payout_item_id, rb.period, d.decided_by, d.reason "
        "FROM owed_again_carry o JOIN reversal_decision d ON d.decision_pk = o.decision_pk "
        "JOIN payout_item ri ON ri.payout_item_id = d.payout_item_id JOIN payout_batch rb ON rb.batch_id = ri.batch_id "
        "WHERE o.batch_id = :b ORDER BY o.affiliate_id, o.currency, o.decision_pk"), {"b": batch_id}).all()
    return [{"affiliate_id": a, "currency": c, "amount_minor": int(m), "reversed_item": int(item),
             "why": f"owed again: transfer of {period_key(as_date(p))} (item {item}) was reversed; decided by {by}"
                    + (f": {reason}" if reason else "")}
            for a, c, m, item, p, by, reason in rows]


def compute_manifest_hash(conn: sa.Connection, batch_id: str, period: date, policy: dict) -> tuple[str, int]:
    """SHA-256 over the period, the policy and every item's reviewed fields, in a canonical order.
    Approval records this hash; execution refuses a batch whose items no longer produce it."""
    digest = hashlib.sha256(json.dumps({"period": period.isoformat(), "policy": policy}, sort_keys=True).encode())
    result = conn.execute(
        text(f"SELECT {', '.join(_ITEM_HASH_COLUMNS)} FROM payout_item WHERE batch_id = :batch_id "
             "ORDER BY affiliate_id, currency"), {"batch_id": batch_id})
    count = 0
    for row in result:
        digest.update(("\x1f".join("" if v is None else str(v) for v in row) + "\x1e").encode())
        count += 1
    return digest.hexdigest(), count


def _report(conn: sa.Connection, batch_id: str, period: date, outcome: str) -> ManifestReport:
    batch = conn.execute(text("SELECT status, manifest_hash, item_count FROM payout_batch WHERE batch_id = :b"),
                         {"b": batch_id}).one()
    totals: dict[str, CurrencyTotals] = {}
    for currency, status, count, amount, carried_in in conn.execute(
        text("SELECT currency, status, COUNT(*), SUM(amount_minor), SUM(carried_in_minor) FROM payout_item "
             "WHERE batch_id = :b GROUP BY currency, status ORDER BY currency"), {"b": batch_id}):
        t = totals.setdefault(currency, CurrencyTotals(currency))
        t.carried_in_minor += int(carried_in)
        if status == "carried_forward":
            t.carried_count, t.carried_minor = t.carried_count + count, t.carried_minor + int(amount)
        else:
            t.pending_count, t.pending_minor = t.pending_count + count, t.pending_minor + int(amount)
    return ManifestReport(batch_id, period, batch.status, batch.manifest_hash, batch.item_count, outcome,
                          list(totals.values()))
