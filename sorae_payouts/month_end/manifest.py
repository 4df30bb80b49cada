"""The payout manifest of a period: one payout item per affiliate and currency.

An item's amount is what the affiliate earned in the period (finalized commissions, net of in-period
adjustments and of clawbacks booked in the period) plus the balance carried in from the previous
batch. An item is `pending` (to be paid) when its amount reaches the currency's minimum payout;
otherwise it is `carried_forward` with a reason (`below_minimum`, `negative_balance`,
`zero_balance`, or `not_onboarded` for an affiliate without a Stripe connected account yet) and its
amount becomes the next batch's carried-in balance: an affiliate who onboards is paid in the first
batch built after onboarding, with nothing lost meanwhile. Items an executed earlier batch left unpaid
(failed or held) are closed and carried in too (`sorae_payouts.month_end.carry`). Money never disappears
between batches: conservation is checked per currency (`sorae_payouts.month_end.audit`).

Batches are built in period order: a period's batch needs the batches of all earlier finalized periods
(their carried balances flow in), and a draft can be rebuilt only while no later batch exists. A draft
can be rebuilt at will; once approved, the manifest is frozen (database triggers) and rebuilding is a
no-op that says so.

Programs: each program has its own batch per month (`batch_id_for`), built under its effective policy
(the deployment's, overridden by the program's policy: `effective_policy`), from its own rows only.
`manifest_build.build_manifests` builds one month for a whole set of programs in a fixed number of
statements; one program is a set of one.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import date

import sqlalchemy as sa

from sorae_payouts.core.errors import PayoutRefused
from sorae_payouts.core.money import parse_minor
from sorae_payouts.core.periods import period_key
from sorae_payouts.ledger.item_states import ItemStatus
from sorae_payouts.ledger.sql import as_date, set_text, text
from sorae_payouts.registry.programs import DEFAULT_PROGRAM, Program

DEFAULT_MINIMUM_PAYOUT = {"usd": "50.00", "eur": "50.00", "gbp": "50.00", "jpy": "5000"}
# A batch paying more than this in any currency needs two approvals by different people.
DEFAULT_DUAL_APPROVAL_OVER = {"usd": "100000.00", "eur": "100000.00", "gbp": "100000.00", "jpy": "15000000"}
NEGATIVE_BALANCE_CARRY, NEGATIVE_BALANCE_RECOVER = "carry", "recover_by_reversal"
NEGATIVE_BALANCE_POLICIES = (NEGATIVE_BALANCE_CARRY, NEGATIVE_BALANCE_RECOVER)


class ManifestError(PayoutRefused):
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
            raise ValueError(
                f"negative_balance must be one of {', '.join(NEGATIVE_BALANCE_POLICIES)}, not {self.negative_balance!r}"
            )

    @classmethod
    def from_major(
        cls,
        minimums: dict[str, str],
        dual_approval_over: dict[str, str] | None = None,
        negative_balance: str = NEGATIVE_BALANCE_CARRY,
    ) -> PayoutPolicy:
        """Build from decimal strings in major units ({"usd": "50.00", "jpy": "5000"}), parsed exactly."""
        return cls(
            {c.lower(): parse_minor(v, c.lower()) for c, v in minimums.items()},
            1,
            {c.lower(): parse_minor(v, c.lower()) for c, v in (dual_approval_over or {}).items()},
            negative_balance,
        )

    def as_json(self) -> dict:
        return {
            "minimum_minor": dict(sorted(self.minimum_minor.items())),
            "default_minimum_minor": self.default_minimum_minor,
            "dual_approval_over_minor": dict(sorted(self.dual_approval_over_minor.items())),
            "negative_balance": self.negative_balance,
        }


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
    program_id: str = DEFAULT_PROGRAM


def batch_id_for(period: date, program_id: str = DEFAULT_PROGRAM) -> str:
    """Deterministic batch id; also the Stripe `transfer_group` of the batch's transfers:
    `payout_YYYY-MM` for the default program (single-program ledgers keep their ids and groups),
    `payout_<program>_YYYY-MM` otherwise."""
    if program_id == DEFAULT_PROGRAM:
        return f"payout_{period_key(period)}"
    return f"payout_{program_id}_{period_key(period)}"


def effective_policy(base: PayoutPolicy, program: Program) -> PayoutPolicy:
    """The policy a program's batch is built and approved under: the deployment's `base`, with the
    program's policy overrides applied key by key (per currency for the per-currency amounts, so a
    program that sets its usd minimum keeps the deployment's other minimums)."""
    overrides = program.policy
    return replace(
        base,
        minimum_minor={**base.minimum_minor, **(overrides.get("minimum_minor") or {})},
        default_minimum_minor=int(overrides.get("default_minimum_minor", base.default_minimum_minor)),
        dual_approval_over_minor={**base.dual_approval_over_minor, **(overrides.get("dual_approval_over_minor") or {})},
        negative_balance=overrides.get("negative_balance", base.negative_balance),
    )


# The reviewed, frozen fields only: `status` moves during execution, while `carry_reason` (NULL for a
# payable item) already says which items are to be paid.
_ITEM_HASH_COLUMNS = (
    "affiliate_id",
    "currency",
    "stripe_account_id",
    "commission_count",
    "period_amount_minor",
    "carried_in_minor",
    "amount_minor",
    "carry_reason",
)


def owed_again_lines(conn: sa.Connection, batch_id: str) -> list[dict]:
    """One line per owed-again amount carried into the batch, saying why (for the manifest review)."""
    rows = conn.execute(
        text(
            "SELECT o.affiliate_id, o.currency, o.amount_minor, d.payout_item_id, rb.period, d.decided_by, d.reason "
            "FROM owed_again_carry o JOIN reversal_decision d ON d.decision_pk = o.decision_pk "
            "JOIN payout_item ri ON ri.payout_item_id = d.payout_item_id JOIN payout_batch rb ON rb.batch_id = "
            "ri.batch_id "
            "WHERE o.batch_id = :b ORDER BY o.affiliate_id, o.currency, o.decision_pk"
        ),
        {"b": batch_id},
    ).all()
    return [
        {
            "affiliate_id": a,
            "currency": c,
            "amount_minor": int(m),
            "reversed_item": int(item),
            "why": f"owed again: transfer of {period_key(as_date(p))} (item {item}) was reversed; decided by {by}"
            + (f": {reason}" if reason else ""),
        }
        for a, c, m, item, p, by, reason in rows
    ]


def compute_manifest_hash(conn: sa.Connection, batch_id: str, period: date, policy: dict) -> tuple[str, int]:
    """SHA-256 over the period, the policy and every item's reviewed fields, in a canonical order.
    Approval records this hash; execution refuses a batch whose items no longer produce it."""
    return manifest_hashes(conn, {batch_id: (period, policy)})[batch_id]


# One item's line of the hash, built by the database (fields joined by the unit separator, ended by the
# record separator; NULL as the empty string, numbers in decimal): Python only feeds the lines to SHA-256.
_ITEM_LINE = " || :us || ".join(f"COALESCE(CAST({c} AS TEXT), '')" for c in _ITEM_HASH_COLUMNS) + " || :rs"


def manifest_hashes(conn: sa.Connection, batches: Mapping[str, tuple[date, dict]]) -> dict[str, tuple[str, int]]:
    """`compute_manifest_hash` of many batches (batch id -> (period, policy)) with one streamed query."""
    digests = {
        b: hashlib.sha256(json.dumps({"period": p.isoformat(), "policy": pol}, sort_keys=True).encode())
        for b, (p, pol) in batches.items()
    }
    counts = dict.fromkeys(batches, 0)
    if not batches:
        return {}
    # Streamed, per statement (Connection.execution_options would stream every later statement too).
    statement = set_text(
        f"SELECT batch_id, {_ITEM_LINE} FROM payout_item WHERE batch_id IN :batch_ids "
        "ORDER BY batch_id, affiliate_id, currency"
    )
    result = conn.execute(
        statement.execution_options(stream_results=True, yield_per=20_000),
        {"batch_ids": sorted(batches), "us": "\x1f", "rs": "\x1e"},
    )
    for batch_id, line in result:
        digests[batch_id].update(line.encode())
        counts[batch_id] += 1
    return {b: (d.hexdigest(), counts[b]) for b, d in digests.items()}


def manifest_reports(
    conn: sa.Connection, period: date, outcomes: Mapping[str, tuple[str, str]]
) -> dict[str, ManifestReport]:
    """Reports of the period's batches, program id -> (batch id, outcome), in two statements."""
    if not outcomes:
        return {}
    batch_ids = sorted(b for b, _ in outcomes.values())
    batches = {
        r.batch_id: r
        for r in conn.execute(
            set_text(
                "SELECT batch_id, status, manifest_hash, item_count FROM payout_batch WHERE batch_id IN :batch_ids"
            ),
            {"batch_ids": batch_ids},
        )
    }
    totals: dict[str, dict[str, CurrencyTotals]] = {b: {} for b in batch_ids}
    for batch_id, currency, status, count, amount, carried_in in conn.execute(
        set_text(
            "SELECT batch_id, currency, status, COUNT(*), SUM(amount_minor), SUM(carried_in_minor) FROM payout_item "
            "WHERE batch_id IN :batch_ids GROUP BY batch_id, currency, status ORDER BY batch_id, currency"
        ),
        {"batch_ids": batch_ids},
    ):
        t = totals[batch_id].setdefault(currency, CurrencyTotals(currency))
        t.carried_in_minor += int(carried_in)
        if status == ItemStatus.CARRIED_FORWARD:
            t.carried_count, t.carried_minor = t.carried_count + count, t.carried_minor + int(amount)
        else:
            t.pending_count, t.pending_minor = t.pending_count + count, t.pending_minor + int(amount)
    return {
        program_id: ManifestReport(
            batch_id,
            period,
            batches[batch_id].status,
            batches[batch_id].manifest_hash,
            batches[batch_id].item_count,
            outcome,
            list(totals[batch_id].values()),
            program_id,
        )
        for program_id, (batch_id, outcome) in outcomes.items()
    }
