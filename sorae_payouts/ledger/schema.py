"""Ledger tables (SQLAlchemy Core). Money columns are BIGINT minor units next to a lowercase currency.

Record life cycles (the database enforces the immutable states with triggers, see the migrations):
- affiliate: master data, upserted by imports (onboarding fills `stripe_account_id` later).
- commission: imported once; immutable (no UPDATE/DELETE/INSERT) once its period is finalized.
- order_event: imported once, append-only; applied at finalization through `commission_adjustment`.
- commission_period: one row per finalized period, with a per-currency snapshot; append-only.
- commission_adjustment: the effect of an order event on a commission, booked in a period:
  `in_period` for the commission's own period, `clawback` (negative) in a later period. Append-only.
- payout_batch: one per period; `draft` (rebuildable) -> `approved` (manifest frozen) -> execution.
- payout_item: one per affiliate and currency per batch; amounts frozen once the batch is approved.
- transfer_attempt: one Stripe transfer try for an item; `processing` -> `posted` | `failed`, terminal
  states immutable; the idempotency key is unique and stored before Stripe is called.
- reversal_decision (0009): append-only operators' (or the recovery policy's) decisions on reversed money.
- owed_again_carry (0009): the batch carrying an owed-again decision in; changeable only while draft.
- transfer_reversal_request (0009): reversals we ask Stripe for; like transfer_attempt, key first.
- operator_bootstrap, operator_key, operator_request, operator_confirmation, program_approval_policy,
  approval_legacy_batch (0050): signed operators: keys, registry changes confirmed by a second operator,
  the programs' approval thresholds; append-only (see registry/operator_changes.py).
- stripe_rate_schedule (0011): operational state, not a money record: each paying account's next
  Stripe request slot, overwritten on every request.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

# INTEGER PRIMARY KEY is SQLite's rowid alias (fast, autoincrementing); BIGINT everywhere else.
SurrogateKey = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Money = sa.BigInteger
Currency = sa.String(3)
Timestamp = sa.DateTime(timezone=True)

ProgramId = sa.String(64)

# --- programs (revision 0012): one per merchant; every record below carries its program ------------

program = sa.Table(
    "program",
    metadata,
    sa.Column("program_id", ProgramId, primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    # NULL: Sorae's platform account (STRIPE_API_KEY); else `env:VAR` or `secrets:<entry>`, never a key.
    sa.Column("paying_account_ref", sa.Text),
    # The Stripe account id the program's key resolved to when first used (revision 0014): a fact, not a label.
    sa.Column("paying_account_id", sa.String(64)),
    sa.Column("policy", sa.JSON, nullable=False),  # overrides of the deployment's policy
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("created_by", sa.Text, nullable=False),
    sa.CheckConstraint("status IN ('active', 'disabled')", name="ck_program_status"),
    sa.CheckConstraint(
        "paying_account_ref IS NULL OR paying_account_ref LIKE 'env:%' OR paying_account_ref LIKE 'secrets:%'",
        name="ck_program_paying_account_ref",
    ),
)

# One row: the account id of the deployment's platform key (STRIPE_API_KEY), recorded once (revision 0014).
platform_account = sa.Table(
    "platform_account",
    metadata,
    sa.Column("singleton", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("account_id", sa.String(64), nullable=False),
    sa.Column("recorded_at", Timestamp, nullable=False),
    sa.CheckConstraint("singleton = 1", name="ck_platform_account_singleton"),
)

program_event = sa.Table(
    "program_event",
    metadata,
    sa.Column("event_pk", SurrogateKey, primary_key=True, autoincrement=True),
    sa.Column(
        "program_id", ProgramId, sa.ForeignKey("program.program_id", name="fk_program_event_program"), nullable=False
    ),
    sa.Column("event", sa.String(16), nullable=False),
    sa.Column("change", sa.JSON, nullable=False),
    sa.Column("recorded_by", sa.Text, nullable=False),
    sa.Column("recorded_at", Timestamp, nullable=False),
    sa.Column("host", sa.Text),
    sa.Column("os_user", sa.Text),
    sa.CheckConstraint("event IN ('added', 'updated', 'disabled', 'enabled')", name="ck_program_event_event"),
    sa.Index("ix_program_event_program", "program_id", "recorded_at"),
)

# Append-only: the Stripe charges and top-ups that funded a program (one charge funds one program).
program_funding = sa.Table(
    "program_funding",
    metadata,
    sa.Column("funding_pk", SurrogateKey, primary_key=True, autoincrement=True),
    sa.Column(
        "program_id", ProgramId, sa.ForeignKey("program.program_id", name="fk_program_funding_program"), nullable=False
    ),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("stripe_id", sa.String(64), nullable=False),
    sa.Column("paying_account", sa.String(64), nullable=False),
    sa.Column("currency", Currency, nullable=False),
    sa.Column("amount_minor", Money, nullable=False),
    sa.Column("recorded_by", sa.Text, nullable=False),
    sa.Column("recorded_at", Timestamp, nullable=False),
    sa.Column("note", sa.Text),
    sa.UniqueConstraint("stripe_id", name="uq_program_funding_stripe_id"),
    sa.CheckConstraint("kind IN ('charge', 'topup')", name="ck_program_funding_kind"),
    sa.CheckConstraint("amount_minor > 0", name="ck_program_funding_amount"),
    sa.Index("ix_program_funding_program", "program_id", "currency"),
)

affiliate = sa.Table(
    "affiliate",
    metadata,
    sa.Column("program_id", ProgramId, nullable=False),
    sa.Column("affiliate_id", sa.String(64), nullable=False),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("email", sa.Text, nullable=False),
    sa.Column("stripe_account_id", sa.String(64)),
    sa.Column("currency", Currency, nullable=False),
    sa.Column("imported_at", Timestamp, nullable=False),
    # 0007: may this affiliate's connected account also be another affiliate's? (default: no, held)
    sa.Column("allow_shared_destination", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.PrimaryKeyConstraint("program_id", "affiliate_id", name="pk_affiliate"),
    sa.ForeignKeyConstraint(["program_id"], ["program.program_id"], name="fk_affiliate_program"),
)

commission = sa.Table(
    "commission",
    metadata,
    sa.Column("commission_pk", SurrogateKey, primary_key=True, autoincrement=True),
    sa.Column("program_id", ProgramId, nullable=False),
    sa.Column("commission_id", sa.String(64), nullable=False),
    # References affiliate through a database trigger (per statement on PostgreSQL), not a foreign key.
    sa.Column("affiliate_id", sa.String(64), nullable=False),
    sa.Column("order_id", sa.String(64), nullable=False, index=True),
    sa.Column("amount_minor", Money, sa.CheckConstraint("amount_minor > 0"), nullable=False),
    sa.Column("currency", Currency, nullable=False),
    sa.Column("earned_at", Timestamp, nullable=False),
    sa.Column("period", sa.Date, nullable=False),
    sa.Column("imported_at", Timestamp, nullable=False),
    sa.UniqueConstraint("program_id", "commission_id", name="uq_commission_program_commission"),
    sa.Index("ix_commission_period", "period", "program_id"),  # one month of one program, or of all
    sa.Index(
        "ix_commission_affiliate_period", "program_id", "affiliate_id", "period", "currency", "amount_minor"
    ),  # history
)

order_event = sa.Table(
    "order_event",
    metadata,
    sa.Column("event_pk", SurrogateKey, primary_key=True, autoincrement=True),
    sa.Column("program_id", ProgramId, nullable=False),
    sa.Column("event_id", sa.String(64), nullable=False),
    sa.Column("order_id", sa.String(64), nullable=False, index=True),
    sa.Column("kind", sa.String(20), nullable=False),
    # Only for partial_reversal: the commission amount to take back, in the commission's currency.
    sa.Column("amount_minor", Money),
    sa.Column("currency", Currency),
    sa.Column("occurred_at", Timestamp, nullable=False),
    sa.Column("imported_at", Timestamp, nullable=False),
    sa.CheckConstraint("kind IN ('cancellation', 'reversal', 'partial_reversal')", name="ck_order_event_kind"),
    sa.CheckConstraint(
        "(kind = 'partial_reversal') = (amount_minor IS NOT NULL AND amount_minor > 0)",
        name="ck_order_event_partial_amount",
    ),
    sa.UniqueConstraint("program_id", "event_id", name="uq_order_event_program_event"),
)

commission_period = sa.Table(
    "commission_period",
    metadata,
    sa.Column("program_id", ProgramId, nullable=False),
    sa.Column("period", sa.Date, nullable=False),
    sa.Column("status", sa.String(16), nullable=False, server_default="finalized"),
    sa.Column("finalized_at", Timestamp, nullable=False),
    sa.Column("holding_days", sa.Integer, nullable=False),
    sa.PrimaryKeyConstraint("program_id", "period", name="pk_commission_period"),
    sa.ForeignKeyConstraint(["program_id"], ["program.program_id"], name="fk_commission_period_program"),
)

# What was finalized, per currency: the reference the "finalized rows unchanged" check compares with.
period_snapshot = sa.Table(
    "period_snapshot",
    metadata,
    sa.Column("program_id", ProgramId, nullable=False),
    sa.Column("period", sa.Date, nullable=False),
    sa.Column("currency", Currency, nullable=False),
    sa.Column("commission_count", sa.BigInteger, nullable=False),
    sa.Column("gross_minor", Money, nullable=False),
    sa.Column("checksum", Money, nullable=False),
    sa.Column("in_period_adjustments_minor", Money, nullable=False),
    sa.Column("clawbacks_minor", Money, nullable=False),
    sa.PrimaryKeyConstraint("program_id", "period", "currency", name="pk_period_snapshot"),
    sa.ForeignKeyConstraint(
        ["program_id", "period"],
        ["commission_period.program_id", "commission_period.period"],
        name="fk_period_snapshot_period",
    ),
)

commission_adjustment = sa.Table(
    "commission_adjustment",
    metadata,
    sa.Column("adjustment_pk", SurrogateKey, primary_key=True, autoincrement=True),
    sa.Column("program_id", ProgramId, nullable=False),
    sa.Column("commission_pk", sa.BigInteger, sa.ForeignKey("commission.commission_pk"), nullable=False),
    sa.Column("event_id", sa.String(64), nullable=False),
    sa.Column("affiliate_id", sa.String(64), nullable=False),
    sa.Column("currency", Currency, nullable=False),
    sa.Column("amount_minor", Money, sa.CheckConstraint("amount_minor <= 0"), nullable=False),
    sa.Column("booked_period", sa.Date, nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.UniqueConstraint("commission_pk", "event_id", name="uq_adjustment_commission_event"),
    sa.CheckConstraint("kind IN ('in_period', 'clawback')", name="ck_adjustment_kind"),
    sa.ForeignKeyConstraint(
        ["program_id", "event_id"], ["order_event.program_id", "order_event.event_id"], name="fk_adjustment_event"
    ),
    sa.ForeignKeyConstraint(
        ["program_id", "booked_period"],
        ["commission_period.program_id", "commission_period.period"],
        name="fk_adjustment_booked_period",
    ),
    sa.Index("ix_adjustment_booked", "booked_period", "program_id", "affiliate_id", "currency"),
)

payout_batch = sa.Table(
    "payout_batch",
    metadata,
    sa.Column("batch_id", sa.String(64), primary_key=True),
    sa.Column("program_id", ProgramId, nullable=False),
    sa.Column("period", sa.Date, nullable=False),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("manifest_hash", sa.String(64), nullable=False),
    sa.Column("item_count", sa.Integer, nullable=False),
    sa.Column("policy", sa.JSON, nullable=False),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("built_at", Timestamp, nullable=False),
    sa.Column("approved_at", Timestamp),
    sa.Column("approved_by", sa.Text),
    sa.CheckConstraint(
        "status IN ('draft', 'approved', 'executing', 'completed', 'partially_completed', 'completed_with_exceptions')",
        name="ck_payout_batch_status",
    ),
    sa.UniqueConstraint("program_id", "period", name="uq_payout_batch_program_period"),
    sa.ForeignKeyConstraint(
        ["program_id", "period"],
        ["commission_period.program_id", "commission_period.period"],
        name="fk_payout_batch_period",
    ),
)

payout_item = sa.Table(
    "payout_item",
    metadata,
    sa.Column("payout_item_id", SurrogateKey, primary_key=True, autoincrement=True),
    sa.Column("program_id", ProgramId, nullable=False),
    sa.Column("batch_id", sa.String(64), sa.ForeignKey("payout_batch.batch_id"), nullable=False),
    sa.Column("affiliate_id", sa.String(64), nullable=False),
    sa.Column("currency", Currency, nullable=False),
    # Snapshot of the destination at build time: part of what approvers review and the hash covers.
    sa.Column("stripe_account_id", sa.String(64)),
    sa.Column("commission_count", sa.BigInteger, nullable=False),
    sa.Column("period_amount_minor", Money, nullable=False),
    sa.Column("carried_in_minor", Money, nullable=False),
    sa.Column("amount_minor", Money, nullable=False),
    sa.Column("status", sa.String(24), nullable=False),
    sa.Column("carry_reason", sa.String(24)),
    # Execution state (not part of the frozen manifest): why a payable item was not sent this run.
    sa.Column("hold_reason", sa.Text),
    sa.Column("status_updated_at", Timestamp),
    # Revision 0009: how much of the item's transfer Stripe reversed (only grows; trigger).
    sa.Column("reversed_minor", Money, nullable=False, server_default="0"),
    sa.UniqueConstraint("batch_id", "affiliate_id", "currency", name="uq_payout_item_affiliate_currency"),
    sa.ForeignKeyConstraint(
        ["program_id", "affiliate_id"],
        ["affiliate.program_id", "affiliate.affiliate_id"],
        name="fk_payout_item_affiliate",
    ),
    sa.Index("ix_payout_item_affiliate", "program_id", "affiliate_id", "currency"),  # the portal's history
    sa.CheckConstraint("amount_minor = period_amount_minor + carried_in_minor", name="ck_payout_item_sum"),
    sa.CheckConstraint(
        # A built carried item has its reason; an unpaid item closed later keeps its reviewed NULL (0008).
        "carry_reason IS NULL OR status = 'carried_forward'",
        name="ck_payout_item_carry_reason",
    ),
)

# One row: this ledger's identity, minted at migration time and embedded in idempotency keys.
ledger_meta = sa.Table(
    "ledger_meta",
    metadata,
    sa.Column("singleton", sa.Integer, primary_key=True),
    sa.Column("ledger_id", sa.String(32), nullable=False),
    sa.CheckConstraint("singleton = 1", name="ck_ledger_meta_singleton"),
)

transfer_attempt = sa.Table(
    "transfer_attempt",
    metadata,
    sa.Column("attempt_pk", SurrogateKey, primary_key=True, autoincrement=True),
    sa.Column("payout_item_id", sa.BigInteger, sa.ForeignKey("payout_item.payout_item_id"), nullable=False),
    sa.Column("attempt_number", sa.Integer, nullable=False),
    sa.Column("idempotency_key", sa.String(255), nullable=False, unique=True),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("amount_minor", Money, nullable=False),
    sa.Column("currency", Currency, nullable=False),
    sa.Column("destination", sa.String(64), nullable=False),
    sa.Column("stripe_transfer_id", sa.String(64)),
    sa.Column("stripe_request_id", sa.String(64)),
    sa.Column("error_code", sa.String(64)),
    sa.Column("error_message", sa.Text),
    sa.Column("unknown_reason", sa.Text),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("updated_at", Timestamp, nullable=False),
    # Revision 0005: what the idempotency key was derived from (JSON; NULL for keys of the previous
    # format), and why the attempt exists when this ledger did not send it (adopted from Stripe).
    sa.Column("key_basis", sa.Text),
    sa.Column("note", sa.Text),
    # Revision 0012: the attempt's program (its item's, trigger) and the charge it draws on, if any
    # (fixed at claim; the database refuses an attempt that would overspend the charge).
    sa.Column("program_id", ProgramId, nullable=False, server_default="default"),
    sa.Column("source_transaction", sa.String(64), index=True),
    # What the transfer pays besides its month (revision 0016): JSON {"carried_from": [...], "owed_again_of": [...]}.
    sa.Column("sources", sa.Text),
    sa.UniqueConstraint("payout_item_id", "attempt_number", name="uq_transfer_attempt_number"),
    sa.CheckConstraint("state IN ('processing', 'posted', 'failed')", name="ck_transfer_attempt_state"),
    sa.CheckConstraint("amount_minor > 0", name="ck_transfer_attempt_amount"),
    sa.Index(
        "uq_transfer_attempt_one_posted",
        "payout_item_id",
        unique=True,
        sqlite_where=sa.text("state = 'posted'"),
        postgresql_where=sa.text("state = 'posted'"),
    ),
)


# --- operations (revision 0003): approvals and append-only history ---------------------------------

batch_approval = sa.Table(
    "batch_approval",
    metadata,
    sa.Column("approval_pk", SurrogateKey, primary_key=True, autoincrement=True),
    sa.Column("batch_id", sa.String(64), sa.ForeignKey("payout_batch.batch_id"), nullable=False),
    sa.Column("approved_by", sa.Text, nullable=False),
    sa.Column("approved_at", Timestamp, nullable=False),
    sa.Column("manifest_hash", sa.String(64), nullable=False),
    sa.UniqueConstraint("batch_id", "manifest_hash", "approved_by", name="uq_batch_approval_person"),
    # revision 0006: who (normalized operator identity; NULL only on approvals recorded before 0006),
    # from where (host, OS user, Dagster run), for which program.
    sa.Column("program_id", sa.String(64), nullable=False, server_default="default"),
    sa.Column("operator_id", sa.Text),
    sa.Column("host", sa.Text),
    sa.Column("os_user", sa.Text),
    sa.Column("dagster_run_id", sa.Text),
    sa.Index("uq_batch_approval_operator", "batch_id", "manifest_hash", "operator_id", unique=True),
    # revision 0050: the approver's key and signature of the approval statement (NULL only before 0050).
    sa.Column("key_id", sa.String(64)),
    sa.Column("signature", sa.Text),
)

# Written by a database trigger on every status (or hold reason) change of a payout item.
payout_item_status_event = sa.Table(
    "payout_item_status_event",
    metadata,
    sa.Column("event_pk", SurrogateKey, primary_key=True, autoincrement=True),
    sa.Column("payout_item_id", sa.BigInteger, nullable=False, index=True),
    sa.Column("old_status", sa.String(24)),
    sa.Column("new_status", sa.String(24), nullable=False),
    sa.Column("hold_reason", sa.Text),
    sa.Column("recorded_at", Timestamp, nullable=False),
)

transfer_status_event = sa.Table(
    "transfer_status_event",
    metadata,
    sa.Column("event_pk", SurrogateKey, primary_key=True, autoincrement=True),
    sa.Column("attempt_pk", sa.BigInteger, sa.ForeignKey("transfer_attempt.attempt_pk"), nullable=False, index=True),
    sa.Column("stripe_transfer_id", sa.String(64), nullable=False),
    sa.Column("reversed", sa.Boolean, nullable=False),
    sa.Column("amount_reversed_minor", Money, nullable=False),
    sa.Column("recorded_at", Timestamp, nullable=False),
)

account_status_event = sa.Table(
    "account_status_event",
    metadata,
    sa.Column("event_pk", SurrogateKey, primary_key=True, autoincrement=True),
    sa.Column("stripe_account_id", sa.String(64), nullable=False, index=True),
    sa.Column("exists_in_stripe", sa.Boolean, nullable=False),
    sa.Column("transfers_capability", sa.String(16)),
    sa.Column("payouts_enabled", sa.Boolean, nullable=False),
    sa.Column("disabled_reason", sa.Text),
    sa.Column("recorded_at", Timestamp, nullable=False),
)


# --- revision 0005: what operators must look at after an execution; append-only ----------------------

execution_anomaly = sa.Table(
    "execution_anomaly",
    metadata,
    sa.Column("anomaly_pk", SurrogateKey, primary_key=True, autoincrement=True),
    sa.Column("batch_id", sa.String(64), sa.ForeignKey("payout_batch.batch_id"), nullable=False, index=True),
    sa.Column("payout_item_id", sa.BigInteger),
    sa.Column("attempt_pk", sa.BigInteger),
    sa.Column("kind", sa.String(48), nullable=False),
    sa.Column("stripe_transfer_id", sa.String(64)),
    sa.Column("detail", sa.Text, nullable=False),
    sa.Column("recorded_at", Timestamp, nullable=False),
)

# --- operators (revision 0006): who may approve, and the append-only history of the registry ------

operator = sa.Table(
    "operator",
    metadata,
    sa.Column("program_id", sa.String(64), nullable=False, server_default="default"),
    sa.Column("operator_id", sa.Text, nullable=False),  # normalized identity (NFKC, case-folded, trimmed)
    sa.Column("display_name", sa.Text, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("added_at", Timestamp, nullable=False),
    sa.Column("added_by", sa.Text, nullable=False),
    sa.PrimaryKeyConstraint("program_id", "operator_id", name="pk_operator"),
    sa.CheckConstraint("status IN ('active', 'disabled')", name="ck_operator_status"),
    # revision 0050: the current key, and the confirmed request or bootstrap behind the last change.
    sa.Column("key_id", sa.String(64)),
    sa.Column("request_pk", sa.BigInteger),
    sa.Column("bootstrap_pk", sa.BigInteger),
)

operator_event = sa.Table(
    "operator_event",
    metadata,
    sa.Column("event_pk", SurrogateKey, primary_key=True, autoincrement=True),
    sa.Column("program_id", sa.String(64), nullable=False, server_default="default"),
    sa.Column("operator_id", sa.Text, nullable=False),
    sa.Column("event", sa.String(16), nullable=False),
    sa.Column("recorded_by", sa.Text, nullable=False),
    sa.Column("recorded_at", Timestamp, nullable=False),
    sa.Column("host", sa.Text),
    sa.Column("os_user", sa.Text),
    sa.Column("dagster_run_id", sa.Text),
    sa.ForeignKeyConstraint(
        ["program_id", "operator_id"],
        ["operator.program_id", "operator.operator_id"],
        name="fk_operator_event_operator",
    ),
    sa.CheckConstraint("event IN ('added', 'disabled', 'enabled')", name="ck_operator_event_event"),
    sa.Index("ix_operator_event_operator", "program_id", "operator_id", "recorded_at"),
)

# --- the item state machine (revision 0008): the records some transitions require --------------------

# failed -> pending needs one of these for the item's latest attempt (operator retry or refresh).
payout_item_retry = sa.Table(
    "payout_item_retry",
    metadata,
    sa.Column("retry_pk", SurrogateKey, primary_key=True, autoincrement=True),
    sa.Column("payout_item_id", sa.BigInteger, sa.ForeignKey("payout_item.payout_item_id"), nullable=False),
    sa.Column("for_attempt_number", sa.Integer, nullable=False),
    sa.Column("requested_by", sa.Text, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("requested_at", Timestamp, nullable=False),
    sa.UniqueConstraint("payout_item_id", "for_attempt_number", name="uq_payout_item_retry_attempt"),
)

# An unpaid item (failed, or pending/held) of an executed batch, closed when a later month's manifest is
# built: its amount is that month's carried-in, so it can never be paid in both.
payout_item_carry = sa.Table(
    "payout_item_carry",
    metadata,
    sa.Column("carry_pk", SurrogateKey, primary_key=True, autoincrement=True),
    sa.Column(
        "payout_item_id", sa.BigInteger, sa.ForeignKey("payout_item.payout_item_id"), nullable=False, unique=True
    ),
    sa.Column("from_batch_id", sa.String(64), sa.ForeignKey("payout_batch.batch_id"), nullable=False),
    sa.Column("into_batch_id", sa.String(64), sa.ForeignKey("payout_batch.batch_id"), nullable=False),
    sa.Column("affiliate_id", sa.String(64), nullable=False),
    sa.Column("currency", Currency, nullable=False),
    sa.Column("amount_minor", Money, sa.CheckConstraint("amount_minor > 0"), nullable=False),
    sa.Column("unpaid_status", sa.String(24), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("carried_at", Timestamp, nullable=False),
    sa.Index("ix_payout_item_carry_into", "into_batch_id"),
)

# --- money after the transfer (revision 0009): decisions on reversals, owed-again carries, recoveries --

# Append-only: what an operator (or the negative-balance recovery policy) decided about reversed money.
reversal_decision = sa.Table(
    "reversal_decision",
    metadata,
    sa.Column("decision_pk", SurrogateKey, primary_key=True, autoincrement=True),
    sa.Column("program_id", sa.String(64), nullable=False),
    sa.Column("payout_item_id", sa.BigInteger, sa.ForeignKey("payout_item.payout_item_id"), nullable=False, index=True),
    sa.Column("affiliate_id", sa.String(64), nullable=False),
    sa.Column("currency", Currency, nullable=False),
    sa.Column("amount_minor", Money, nullable=False),
    sa.Column("decision", sa.String(16), nullable=False),
    sa.Column("decided_by", sa.Text, nullable=False),
    sa.Column("reason", sa.Text),
    sa.Column("reversal_request_pk", sa.BigInteger, unique=True),  # set when the recovery policy decided
    sa.Column("decided_at", Timestamp, nullable=False),
    sa.CheckConstraint("amount_minor > 0", name="ck_reversal_decision_amount"),
    sa.CheckConstraint("decision IN ('owe_again', 'write_off')", name="ck_reversal_decision_kind"),
    sa.CheckConstraint("decision = 'owe_again' OR reason IS NOT NULL", name="ck_reversal_decision_reason"),
    # revision 0050: the deciding operator, their key and signature (NULL for the recovery policy's).
    sa.Column("operator_id", sa.Text),
    sa.Column("key_id", sa.String(64)),
    sa.Column("signature", sa.Text),
)

# Which batch carries an owed-again decision in; rows change only while that batch is a draft.
owed_again_carry = sa.Table(
    "owed_again_carry",
    metadata,
    sa.Column("decision_pk", sa.BigInteger, sa.ForeignKey("reversal_decision.decision_pk"), primary_key=True),
    sa.Column("batch_id", sa.String(64), sa.ForeignKey("payout_batch.batch_id"), nullable=False, index=True),
    sa.Column("affiliate_id", sa.String(64), nullable=False),
    sa.Column("currency", Currency, nullable=False),
    sa.Column("amount_minor", Money, nullable=False),
)

# Before an unpaid item is closed as carried, Stripe was asked whether its money was paid (revision 0016).
payout_item_stripe_check = sa.Table(
    "payout_item_stripe_check",
    metadata,
    sa.Column("check_pk", SurrogateKey, primary_key=True, autoincrement=True),
    sa.Column("program_id", ProgramId, sa.ForeignKey("program.program_id"), nullable=False),
    sa.Column("payout_item_id", sa.BigInteger, sa.ForeignKey("payout_item.payout_item_id"), nullable=False, index=True),
    sa.Column("latest_attempt_pk", sa.BigInteger),
    sa.Column("paying_account", sa.String(64), nullable=False),
    sa.Column("groups_scanned", sa.Text, nullable=False),
    sa.Column("found_transfer_id", sa.String(64)),
    sa.Column("checked_at", Timestamp, nullable=False),
)

# A reversal we ask Stripe for (negative-balance recovery): key committed before the call, outcome after.
transfer_reversal_request = sa.Table(
    "transfer_reversal_request",
    metadata,
    sa.Column("request_pk", SurrogateKey, primary_key=True, autoincrement=True),
    sa.Column("program_id", sa.String(64), nullable=False),
    sa.Column("purpose", sa.String(32), nullable=False),
    sa.Column("period", sa.Date, nullable=False),
    sa.Column("affiliate_id", sa.String(64), nullable=False),
    sa.Column("currency", Currency, nullable=False),
    sa.Column("payout_item_id", sa.BigInteger, sa.ForeignKey("payout_item.payout_item_id"), nullable=False),
    sa.Column("stripe_transfer_id", sa.String(64), nullable=False),
    sa.Column("sequence", sa.Integer, nullable=False),
    sa.Column("amount_minor", Money, nullable=False),
    sa.Column("idempotency_key", sa.String(255), nullable=False, unique=True),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("stripe_reversal_id", sa.String(64)),
    sa.Column("error_code", sa.String(64)),
    sa.Column("error_message", sa.Text),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("updated_at", Timestamp, nullable=False),
    sa.UniqueConstraint(
        "program_id", "period", "affiliate_id", "currency", "sequence", name="uq_transfer_reversal_request_sequence"
    ),
    sa.CheckConstraint("state IN ('processing', 'succeeded', 'failed')", name="ck_transfer_reversal_request_state"),
    sa.CheckConstraint("amount_minor > 0", name="ck_transfer_reversal_request_amount"),
)

# --- signed operators (revision 0050): keys, confirmed registry changes, approval thresholds ----------

KeyId = sa.String(64)  # SHA-256 hex of an Ed25519 public key
_SIGNATURE_CHECK = "length(signature) = 88"  # base64 of a 64-byte Ed25519 signature

# The database owner's registration of a program's first operators (PostgreSQL: the owner role only).
operator_bootstrap = sa.Table(
    "operator_bootstrap",
    metadata,
    sa.Column("bootstrap_pk", SurrogateKey, primary_key=True, autoincrement=True),
    sa.Column("program_id", ProgramId, sa.ForeignKey("program.program_id"), nullable=False),
    sa.Column("operator_count", sa.Integer, nullable=False),
    sa.Column("recorded_by", sa.Text, nullable=False),
    sa.Column("recorded_at", Timestamp, nullable=False),
    sa.Column("host", sa.Text),
    sa.Column("os_user", sa.Text),
    sa.Column("dagster_run_id", sa.Text),
    sa.CheckConstraint("operator_count > 0", name="ck_operator_bootstrap_count"),
)

# A registry or approval-policy change signed by an active operator; effective once confirmed.
operator_request = sa.Table(
    "operator_request",
    metadata,
    sa.Column("request_pk", SurrogateKey, primary_key=True, autoincrement=True),
    sa.Column("program_id", ProgramId, sa.ForeignKey("program.program_id"), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("subject", sa.Text),
    sa.Column("display_name", sa.Text),
    sa.Column("key_id", KeyId),
    sa.Column("public_key", sa.Text),
    sa.Column("policy_value", sa.Text),
    sa.Column("requested_by", sa.Text, nullable=False),
    sa.Column("requester_key_id", KeyId, nullable=False),
    sa.Column("requested_at", Timestamp, nullable=False),
    sa.Column("signature", sa.Text, nullable=False),
    sa.Column("host", sa.Text),
    sa.Column("os_user", sa.Text),
    sa.Column("dagster_run_id", sa.Text),
    sa.CheckConstraint(
        "kind IN ('add', 'enable', 'rename', 'rekey', 'disable', 'policy')", name="ck_operator_request_kind"
    ),
    sa.CheckConstraint("(kind = 'policy') = (subject IS NULL)", name="ck_operator_request_subject"),
    sa.CheckConstraint(_SIGNATURE_CHECK, name="ck_operator_request_signature"),
    sa.Index("ix_operator_request_program", "program_id", "requested_at"),
)

# A second operator's signed confirmation of a request (one per request).
operator_confirmation = sa.Table(
    "operator_confirmation",
    metadata,
    sa.Column("confirmation_pk", SurrogateKey, primary_key=True, autoincrement=True),
    sa.Column("request_pk", sa.BigInteger, sa.ForeignKey("operator_request.request_pk"), nullable=False),
    sa.Column("program_id", ProgramId, nullable=False),
    sa.Column("confirmed_by", sa.Text, nullable=False),
    sa.Column("confirmer_key_id", KeyId, nullable=False),
    sa.Column("confirmed_at", Timestamp, nullable=False),
    sa.Column("signature", sa.Text, nullable=False),
    sa.Column("host", sa.Text),
    sa.Column("os_user", sa.Text),
    sa.Column("dagster_run_id", sa.Text),
    sa.UniqueConstraint("request_pk", name="uq_operator_confirmation_request"),
    sa.CheckConstraint(_SIGNATURE_CHECK, name="ck_operator_confirmation_signature"),
)

# Operators' public keys (one key, one identity within a program), each from a bootstrap or a request.
operator_key = sa.Table(
    "operator_key",
    metadata,
    sa.Column("key_pk", SurrogateKey, primary_key=True, autoincrement=True),
    sa.Column("program_id", ProgramId, nullable=False),
    sa.Column("operator_id", sa.Text, nullable=False),
    sa.Column("key_id", KeyId, nullable=False),
    sa.Column("public_key", sa.Text, nullable=False),
    sa.Column("registered_at", Timestamp, nullable=False),
    sa.Column("bootstrap_pk", sa.BigInteger, sa.ForeignKey("operator_bootstrap.bootstrap_pk")),
    sa.Column("request_pk", sa.BigInteger, sa.ForeignKey("operator_request.request_pk")),
    sa.UniqueConstraint("program_id", "key_id", name="uq_operator_key_program_key"),
    sa.CheckConstraint("(bootstrap_pk IS NULL) <> (request_pk IS NULL)", name="ck_operator_key_source"),
    sa.Index("ix_operator_key_operator", "program_id", "operator_id"),
)

# A program's dual-approval thresholds over time: the first row at creation, later ones confirmed.
program_approval_policy = sa.Table(
    "program_approval_policy",
    metadata,
    sa.Column("policy_pk", SurrogateKey, primary_key=True, autoincrement=True),
    sa.Column("program_id", ProgramId, sa.ForeignKey("program.program_id"), nullable=False),
    sa.Column("dual_approval_over_minor", sa.Text),
    sa.Column("request_pk", sa.BigInteger, sa.ForeignKey("operator_request.request_pk")),
    sa.Column("recorded_at", Timestamp, nullable=False),
    sa.Index("ix_program_approval_policy_program", "program_id"),
)

# Batches approved before revision 0050: their unsigned approvals still count.
approval_legacy_batch = sa.Table(
    "approval_legacy_batch",
    metadata,
    sa.Column("batch_id", sa.String(64), sa.ForeignKey("payout_batch.batch_id"), primary_key=True),
)

# --- operational state (revision 0011): not a money record, no triggers ---------------------------------

# Overwritten on every Stripe request: no immutability or TRUNCATE guards; the app role may not DELETE.
OPERATIONAL_TABLES = frozenset({"stripe_rate_schedule"})

# The request schedule of each paying Stripe account, shared by every process (see
# stripe_gateway/shared_rate_limit.py). Times are microseconds since the epoch on the DATABASE's clock.
stripe_rate_schedule = sa.Table(
    "stripe_rate_schedule",
    metadata,
    sa.Column("paying_account", sa.String(64), primary_key=True),
    sa.Column("last_slot_us", sa.BigInteger, nullable=False),  # the slot most recently reserved
    sa.Column("next_slot_us", sa.BigInteger, nullable=False),  # last_slot_us + interval_us
    sa.Column("reserved_at_us", sa.BigInteger, nullable=False),  # database clock at that reservation
    sa.Column("interval_us", sa.BigInteger, nullable=False),  # the spacing that reservation used
    sa.CheckConstraint("interval_us > 0", name="ck_stripe_rate_schedule_interval"),
)
