"""Definitions of revision 0012 (programs), frozen history: the new tables, the rebuilt ones, the
PostgreSQL alterations, the program-aware guards and the history view. See versions/0012_programs.py."""

from __future__ import annotations

import sqlalchemy as sa

PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TS = sa.DateTime(timezone=True)
ID = sa.String(64)
CUR = sa.String(3)
P = "program_id"


def _program_column() -> sa.Column:
    return sa.Column(P, ID, nullable=False)


def new_tables() -> list[sa.Table]:
    m = sa.MetaData()
    program = sa.Table(
        "program",
        m,
        sa.Column(P, ID, primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        # NULL: Sorae's platform account (STRIPE_API_KEY). Else a reference to the merchant's own key:
        # `env:VAR` or `secrets:<entry>` (SORAE_SECRETS_FILE). Never a key.
        sa.Column("paying_account_ref", sa.Text),
        sa.Column("policy", sa.JSON, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("created_by", sa.Text, nullable=False),
        sa.CheckConstraint("status IN ('active', 'disabled')", name="ck_program_status"),
        sa.CheckConstraint(
            "paying_account_ref IS NULL OR paying_account_ref LIKE 'env:%' OR paying_account_ref LIKE 'secrets:%'",
            name="ck_program_paying_account_ref",
        ),
    )
    sa.Table(
        "program_event",
        m,
        sa.Column("event_pk", PK, primary_key=True, autoincrement=True),
        sa.Column(P, ID, sa.ForeignKey("program.program_id", name="fk_program_event_program"), nullable=False),
        sa.Column("event", sa.String(16), nullable=False),
        sa.Column("change", sa.JSON, nullable=False),
        sa.Column("recorded_by", sa.Text, nullable=False),
        sa.Column("recorded_at", TS, nullable=False),
        sa.Column("host", sa.Text),
        sa.Column("os_user", sa.Text),
        sa.CheckConstraint("event IN ('added', 'updated', 'disabled', 'enabled')", name="ck_program_event_event"),
        sa.Index("ix_program_event_program", P, "recorded_at"),
    )
    sa.Table(
        "program_funding",
        m,
        sa.Column("funding_pk", PK, primary_key=True, autoincrement=True),
        sa.Column(P, ID, sa.ForeignKey("program.program_id", name="fk_program_funding_program"), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("stripe_id", ID, nullable=False),
        sa.Column("paying_account", ID, nullable=False),
        sa.Column("currency", CUR, nullable=False),
        sa.Column("amount_minor", sa.BigInteger, nullable=False),
        sa.Column("recorded_by", sa.Text, nullable=False),
        sa.Column("recorded_at", TS, nullable=False),
        sa.Column("note", sa.Text),
        sa.UniqueConstraint("stripe_id", name="uq_program_funding_stripe_id"),  # one charge funds one program
        sa.CheckConstraint("kind IN ('charge', 'topup')", name="ck_program_funding_kind"),
        sa.CheckConstraint("amount_minor > 0", name="ck_program_funding_amount"),
        sa.Index("ix_program_funding_program", P, "currency"),
    )
    return [program, *[t for t in m.sorted_tables if t is not program]]


def rebuilt_tables() -> list[sa.Table]:
    """The tables whose keys gain the program, as they are after 0012 (SQLite rebuilds them)."""
    m = sa.MetaData()
    sa.Table("program", m, sa.Column(P, ID, primary_key=True))  # referenced only
    affiliate = sa.Table(
        "affiliate",
        m,
        _program_column(),
        sa.Column("affiliate_id", ID, nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("email", sa.Text, nullable=False),
        sa.Column("stripe_account_id", ID),
        sa.Column("currency", CUR, nullable=False),
        sa.Column("imported_at", TS, nullable=False),
        sa.Column("allow_shared_destination", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.PrimaryKeyConstraint(P, "affiliate_id", name="pk_affiliate"),
        sa.ForeignKeyConstraint([P], ["program.program_id"], name="fk_affiliate_program"),
    )
    commission = sa.Table(
        "commission",
        m,
        sa.Column("commission_pk", PK, primary_key=True, autoincrement=True),
        _program_column(),
        sa.Column("commission_id", ID, nullable=False),
        sa.Column("affiliate_id", ID, nullable=False),
        sa.Column("order_id", ID, nullable=False),
        sa.Column("amount_minor", sa.BigInteger, sa.CheckConstraint("amount_minor > 0"), nullable=False),
        sa.Column("currency", CUR, nullable=False),
        sa.Column("earned_at", TS, nullable=False),
        sa.Column("period", sa.Date, nullable=False),
        sa.Column("imported_at", TS, nullable=False),
        sa.UniqueConstraint(P, "commission_id", name="uq_commission_program_commission"),
        sa.Index("ix_commission_order_id", "order_id"),
        sa.Index("ix_commission_period", "period", P),
        sa.Index("ix_commission_affiliate_period", P, "affiliate_id", "period", "currency", "amount_minor"),
    )
    order_event = sa.Table(
        "order_event",
        m,
        sa.Column("event_pk", PK, primary_key=True, autoincrement=True),
        _program_column(),
        sa.Column("event_id", ID, nullable=False),
        sa.Column("order_id", ID, nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("amount_minor", sa.BigInteger),
        sa.Column("currency", CUR),
        sa.Column("occurred_at", TS, nullable=False),
        sa.Column("imported_at", TS, nullable=False),
        sa.UniqueConstraint(P, "event_id", name="uq_order_event_program_event"),
        sa.Index("ix_order_event_order_id", "order_id"),
        sa.CheckConstraint("kind IN ('cancellation', 'reversal', 'partial_reversal')", name="ck_order_event_kind"),
        sa.CheckConstraint(
            "(kind = 'partial_reversal') = (amount_minor IS NOT NULL AND amount_minor > 0)",
            name="ck_order_event_partial_amount",
        ),
    )
    period = sa.Table(
        "commission_period",
        m,
        _program_column(),
        sa.Column("period", sa.Date, nullable=False),
        sa.Column("status", sa.String(16), nullable=False, server_default="finalized"),
        sa.Column("finalized_at", TS, nullable=False),
        sa.Column("holding_days", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint(P, "period", name="pk_commission_period"),
        sa.ForeignKeyConstraint([P], ["program.program_id"], name="fk_commission_period_program"),
    )
    snapshot = sa.Table(
        "period_snapshot",
        m,
        _program_column(),
        sa.Column("period", sa.Date, nullable=False),
        sa.Column("currency", CUR, nullable=False),
        sa.Column("commission_count", sa.BigInteger, nullable=False),
        sa.Column("gross_minor", sa.BigInteger, nullable=False),
        sa.Column("checksum", sa.BigInteger, nullable=False),
        sa.Column("in_period_adjustments_minor", sa.BigInteger, nullable=False),
        sa.Column("clawbacks_minor", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint(P, "period", "currency", name="pk_period_snapshot"),
        sa.ForeignKeyConstraint(
            [P, "period"],
            ["commission_period.program_id", "commission_period.period"],
            name="fk_period_snapshot_period",
        ),
    )
    adjustment = sa.Table(
        "commission_adjustment",
        m,
        sa.Column("adjustment_pk", PK, primary_key=True, autoincrement=True),
        _program_column(),
        sa.Column("commission_pk", sa.BigInteger, sa.ForeignKey("commission.commission_pk"), nullable=False),
        sa.Column("event_id", ID, nullable=False),
        sa.Column("affiliate_id", ID, nullable=False),
        sa.Column("currency", CUR, nullable=False),
        sa.Column("amount_minor", sa.BigInteger, sa.CheckConstraint("amount_minor <= 0"), nullable=False),
        sa.Column("booked_period", sa.Date, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.UniqueConstraint("commission_pk", "event_id", name="uq_adjustment_commission_event"),
        sa.CheckConstraint("kind IN ('in_period', 'clawback')", name="ck_adjustment_kind"),
        sa.ForeignKeyConstraint(
            [P, "event_id"], ["order_event.program_id", "order_event.event_id"], name="fk_adjustment_event"
        ),
        sa.ForeignKeyConstraint(
            [P, "booked_period"],
            ["commission_period.program_id", "commission_period.period"],
            name="fk_adjustment_booked_period",
        ),
        sa.Index("ix_adjustment_booked", "booked_period", P, "affiliate_id", "currency"),
    )
    batch = sa.Table(
        "payout_batch",
        m,
        sa.Column("batch_id", ID, primary_key=True),
        _program_column(),
        sa.Column("period", sa.Date, nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("manifest_hash", sa.String(64), nullable=False),
        sa.Column("item_count", sa.Integer, nullable=False),
        sa.Column("policy", sa.JSON, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("built_at", TS, nullable=False),
        sa.Column("approved_at", TS),
        sa.Column("approved_by", sa.Text),
        sa.UniqueConstraint(P, "period", name="uq_payout_batch_program_period"),
        sa.ForeignKeyConstraint(
            [P, "period"], ["commission_period.program_id", "commission_period.period"], name="fk_payout_batch_period"
        ),
        sa.CheckConstraint(
            "status IN ('draft', 'approved', 'executing', 'completed', 'partially_completed', "
            "'completed_with_exceptions')",
            name="ck_payout_batch_status",
        ),
    )
    item = sa.Table(
        "payout_item",
        m,
        sa.Column("payout_item_id", PK, primary_key=True, autoincrement=True),
        _program_column(),
        sa.Column("batch_id", ID, sa.ForeignKey("payout_batch.batch_id"), nullable=False),
        sa.Column("affiliate_id", ID, nullable=False),
        sa.Column("currency", CUR, nullable=False),
        sa.Column("stripe_account_id", ID),
        sa.Column("commission_count", sa.BigInteger, nullable=False),
        sa.Column("period_amount_minor", sa.BigInteger, nullable=False),
        sa.Column("carried_in_minor", sa.BigInteger, nullable=False),
        sa.Column("amount_minor", sa.BigInteger, nullable=False),
        sa.Column("status", sa.String(24), nullable=False),
        sa.Column("carry_reason", sa.String(24)),
        sa.Column("hold_reason", sa.Text),
        sa.Column("status_updated_at", TS),
        sa.Column("reversed_minor", sa.BigInteger, nullable=False, server_default="0"),
        sa.UniqueConstraint("batch_id", "affiliate_id", "currency", name="uq_payout_item_affiliate_currency"),
        sa.ForeignKeyConstraint(
            [P, "affiliate_id"], ["affiliate.program_id", "affiliate.affiliate_id"], name="fk_payout_item_affiliate"
        ),
        sa.Index("ix_payout_item_affiliate", P, "affiliate_id", "currency"),
        sa.CheckConstraint("amount_minor = period_amount_minor + carried_in_minor", name="ck_payout_item_sum"),
        sa.CheckConstraint("carry_reason IS NULL OR status = 'carried_forward'", name="ck_payout_item_carry_reason"),
    )
    return [affiliate, commission, order_event, period, snapshot, adjustment, batch, item]


def _add_program(table: str) -> list[str]:
    return [
        f"ALTER TABLE {table} ADD COLUMN program_id VARCHAR(64) NOT NULL DEFAULT 'default'",
        f"ALTER TABLE {table} ALTER COLUMN program_id DROP DEFAULT",
    ]


def postgresql_alterations() -> list[str]:
    """In place: columns added (existing rows -> 'default'), keys re-declared with the program."""
    tables = (
        "affiliate",
        "commission",
        "order_event",
        "commission_period",
        "period_snapshot",
        "commission_adjustment",
        "payout_batch",
        "payout_item",
    )
    return [
        *[s for t in tables for s in _add_program(t)],
        # The references that point at keys about to change go first.
        "ALTER TABLE payout_item DROP CONSTRAINT payout_item_affiliate_id_fkey",
        "ALTER TABLE commission_adjustment DROP CONSTRAINT commission_adjustment_event_id_fkey",
        "ALTER TABLE commission_adjustment DROP CONSTRAINT commission_adjustment_booked_period_fkey",
        "ALTER TABLE period_snapshot DROP CONSTRAINT period_snapshot_period_fkey",
        "ALTER TABLE payout_batch DROP CONSTRAINT payout_batch_period_fkey",
        "ALTER TABLE affiliate DROP CONSTRAINT affiliate_pkey",
        "ALTER TABLE affiliate ADD CONSTRAINT pk_affiliate PRIMARY KEY (program_id, affiliate_id)",
        "ALTER TABLE affiliate ADD CONSTRAINT fk_affiliate_program FOREIGN KEY (program_id) REFERENCES program "
        "(program_id)",
        "ALTER TABLE commission DROP CONSTRAINT commission_commission_id_key",
        "ALTER TABLE commission ADD CONSTRAINT uq_commission_program_commission UNIQUE (program_id, commission_id)",
        "DROP INDEX ix_commission_period",
        "CREATE INDEX ix_commission_period ON commission (period, program_id)",
        "DROP INDEX ix_commission_affiliate_period",
        "CREATE INDEX ix_commission_affiliate_period ON commission "
        "(program_id, affiliate_id, period, currency, amount_minor)",
        "ALTER TABLE order_event DROP CONSTRAINT order_event_event_id_key",
        "ALTER TABLE order_event ADD CONSTRAINT uq_order_event_program_event UNIQUE (program_id, event_id)",
        "ALTER TABLE commission_period DROP CONSTRAINT commission_period_pkey",
        "ALTER TABLE commission_period ADD CONSTRAINT pk_commission_period PRIMARY KEY (program_id, period)",
        "ALTER TABLE commission_period ADD CONSTRAINT fk_commission_period_program FOREIGN KEY (program_id) "
        "REFERENCES program (program_id)",
        "ALTER TABLE period_snapshot DROP CONSTRAINT period_snapshot_pkey",
        "ALTER TABLE period_snapshot ADD CONSTRAINT pk_period_snapshot PRIMARY KEY (program_id, period, currency)",
        "ALTER TABLE period_snapshot ADD CONSTRAINT fk_period_snapshot_period FOREIGN KEY (program_id, period) "
        "REFERENCES commission_period (program_id, period)",
        "ALTER TABLE commission_adjustment ADD CONSTRAINT fk_adjustment_event FOREIGN KEY (program_id, event_id) "
        "REFERENCES order_event (program_id, event_id)",
        "ALTER TABLE commission_adjustment ADD CONSTRAINT fk_adjustment_booked_period FOREIGN KEY "
        "(program_id, booked_period) REFERENCES commission_period (program_id, period)",
        "DROP INDEX ix_adjustment_booked",
        "CREATE INDEX ix_adjustment_booked ON commission_adjustment (booked_period, program_id, affiliate_id, "
        "currency)",
        "ALTER TABLE payout_batch DROP CONSTRAINT payout_batch_period_key",
        "ALTER TABLE payout_batch ADD CONSTRAINT uq_payout_batch_program_period UNIQUE (program_id, period)",
        "ALTER TABLE payout_batch ADD CONSTRAINT fk_payout_batch_period FOREIGN KEY (program_id, period) "
        "REFERENCES commission_period (program_id, period)",
        "ALTER TABLE payout_item ADD CONSTRAINT fk_payout_item_affiliate FOREIGN KEY (program_id, affiliate_id) "
        "REFERENCES affiliate (program_id, affiliate_id)",
        "DROP INDEX ix_payout_item_affiliate",
        "CREATE INDEX ix_payout_item_affiliate ON payout_item (program_id, affiliate_id, currency)",
    ]
