"""Revision 0012's triggers and view, frozen history: the guards that now join on the program, the new
program guards (an item stays in its batch's program, an attempt in its item's, a charge is never
overspent) and the program-aware `affiliate_payout_history` view."""

from __future__ import annotations

_FINALIZED = (
    "EXISTS (SELECT 1 FROM commission_period p WHERE p.program_id = {row}.program_id AND p.period = {row}.period)"
)
_BATCH_FROZEN = "EXISTS (SELECT 1 FROM payout_batch b WHERE b.batch_id = {row}.batch_id AND b.status <> 'draft')"
_ITEM_FROZEN_COLUMNS = (
    "program_id",
    "batch_id",
    "affiliate_id",
    "currency",
    "stripe_account_id",
    "commission_count",
    "period_amount_minor",
    "carried_in_minor",
    "amount_minor",
    "carry_reason",
)
_BATCH_FROZEN_COLUMNS = (
    "program_id",
    "batch_id",
    "period",
    "manifest_hash",
    "item_count",
    "created_at",
    "built_at",
    "approved_at",
    "approved_by",
)


def _changed(columns: tuple[str, ...]) -> str:
    return "(" + " OR ".join(f"NEW.{c} IS DISTINCT FROM OLD.{c}" for c in columns) + ")"


def replaced_guards() -> list[tuple[str, str, str, str, str]]:
    """Guards of earlier revisions that 0012 re-creates with the program (same names)."""
    return [
        *[
            (
                f"guard_commission_{ev.lower()}",
                "commission",
                ev,
                _FINALIZED.format(row=row),
                "commission belongs to a finalized period and is immutable",
            )
            for ev, row in (("UPDATE", "OLD"), ("DELETE", "OLD"))
        ],
        (
            "guard_affiliate_update",
            "affiliate",
            "UPDATE",
            "NEW.affiliate_id IS DISTINCT FROM OLD.affiliate_id OR NEW.program_id IS DISTINCT FROM OLD.program_id",
            "an affiliate id and its program never change (commissions refer to them)",
        ),
        (
            "guard_payout_batch_update",
            "payout_batch",
            "UPDATE",
            f"OLD.status <> 'draft' AND ({_changed(_BATCH_FROZEN_COLUMNS)} OR NEW.status = 'draft'"
            " OR CAST(NEW.policy AS TEXT) IS DISTINCT FROM CAST(OLD.policy AS TEXT))",
            "approved payout batch manifest is immutable",
        ),
        (
            "guard_payout_item_update",
            "payout_item",
            "UPDATE",
            f"{_BATCH_FROZEN.format(row='OLD')} AND {_changed(_ITEM_FROZEN_COLUMNS)}",
            "approved payout batch manifest is immutable",
        ),
    ]


def replaced_insert_set_guards() -> list[tuple[str, str, str, str, str]]:
    """(name, table, distinct columns, condition over {row}, message): per statement on PostgreSQL."""
    return [
        (
            "guard_commission_insert",
            "commission",
            "program_id, period",
            _FINALIZED,
            "commission belongs to a finalized period and is immutable",
        ),
        (
            "guard_commission_affiliate",
            "commission",
            "program_id, affiliate_id",
            "NOT EXISTS (SELECT 1 FROM affiliate a WHERE a.program_id = {row}.program_id "
            "AND a.affiliate_id = {row}.affiliate_id)",
            "commission names an unknown affiliate of its program",
        ),
    ]


def program_guards() -> list[tuple[str, str, str, str, str]]:
    return [
        (
            "guard_program_update",
            "program",
            "UPDATE",
            "NEW.program_id IS DISTINCT FROM OLD.program_id OR NEW.created_at IS DISTINCT FROM OLD.created_at "
            "OR NEW.created_by IS DISTINCT FROM OLD.created_by",
            "a program id never changes (every record refers to it)",
        ),
        ("guard_program_delete", "program", "DELETE", "1 = 1", "programs are never deleted (disable them)"),
        *[
            (f"guard_{table}_{ev.lower()}", table, ev, "1 = 1", f"{table} rows are append-only")
            for table in ("program_event", "program_funding")
            for ev in ("UPDATE", "DELETE")
        ],
        (
            "guard_payout_item_program",
            "payout_item",
            "INSERT",
            "NOT EXISTS (SELECT 1 FROM payout_batch b WHERE b.batch_id = NEW.batch_id AND b.program_id = "
            "NEW.program_id)",
            "a payout item belongs to the program of its batch",
        ),
        (
            "guard_transfer_attempt_program",
            "transfer_attempt",
            "INSERT",
            "NOT EXISTS (SELECT 1 FROM payout_item i WHERE i.payout_item_id = NEW.payout_item_id "
            "AND i.program_id = NEW.program_id)",
            "a transfer attempt belongs to the program of its item",
        ),
        (
            "guard_transfer_attempt_source_fixed",
            "transfer_attempt",
            "UPDATE",
            "NEW.program_id IS DISTINCT FROM OLD.program_id "
            "OR NEW.source_transaction IS DISTINCT FROM OLD.source_transaction",
            "the program and source transaction of an attempt are fixed when it is claimed",
        ),
    ]


def create_guard(op, sqlite: bool, name: str, table: str, event: str, condition: str, message: str) -> None:
    if sqlite:
        op.execute(
            f"CREATE TRIGGER {name} BEFORE {event} ON {table} FOR EACH ROW WHEN {condition} "
            f"BEGIN SELECT RAISE(ABORT, 'sorae ledger: {message}'); END"
        )
        return
    op.execute(
        f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        f"IF {condition} THEN RAISE EXCEPTION 'sorae ledger: {message}' USING ERRCODE = 'P0001'; END IF; "
        "IF TG_OP = 'DELETE' THEN RETURN OLD; END IF; RETURN NEW; END $$"
    )
    op.execute(f"CREATE TRIGGER {name} BEFORE {event} ON {table} FOR EACH ROW EXECUTE FUNCTION {name}()")


def create_insert_set_guard(op, sqlite: bool, name: str, table: str, columns: str, template: str, message: str) -> None:
    if sqlite:
        create_guard(op, True, name, table, "INSERT", template.format(row="NEW"), message)
        return
    op.execute(
        f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        f"IF EXISTS (SELECT 1 FROM (SELECT DISTINCT {columns} FROM inserted) n WHERE {template.format(row='n')}) "
        f"THEN RAISE EXCEPTION 'sorae ledger: {message}' USING ERRCODE = 'P0001'; END IF; RETURN NULL; END $$"
    )
    op.execute(
        f"CREATE TRIGGER {name} AFTER INSERT ON {table} REFERENCING NEW TABLE AS inserted "
        f"FOR EACH STATEMENT EXECUTE FUNCTION {name}()"
    )


# An attempt tied to a charge: the charge funds this program, in this currency, and what its live
# attempts (processing or posted) take from it, this one included, stays within its amount.
_SOURCE_REFUSED = (
    "NEW.source_transaction IS NOT NULL AND NOT EXISTS (SELECT 1 FROM program_funding f "
    "WHERE f.stripe_id = NEW.source_transaction AND f.kind = 'charge' AND f.program_id = NEW.program_id "
    "AND f.currency = NEW.currency AND f.amount_minor >= NEW.amount_minor + COALESCE((SELECT SUM(x.amount_minor) "
    "FROM transfer_attempt x WHERE x.source_transaction = NEW.source_transaction "
    "AND x.state IN ('processing', 'posted')), 0))"
)
_SOURCE_MESSAGE = "an attempt may not take more from a charge than the charge, nor draw on a charge of another program"


def create_source_transaction_guard(op, sqlite: bool) -> None:
    name = "guard_transfer_attempt_source"
    if sqlite:  # writers are serialized (BEGIN IMMEDIATE): the sum sees every earlier attempt
        create_guard(op, True, name, "transfer_attempt", "INSERT", _SOURCE_REFUSED, _SOURCE_MESSAGE)
        return
    # Concurrent claimers on one charge queue on its funding row (FOR UPDATE), so each sum sees the
    # attempts committed before it.
    op.execute(
        f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        "IF NEW.source_transaction IS NOT NULL THEN "
        "PERFORM 1 FROM program_funding f WHERE f.stripe_id = NEW.source_transaction FOR UPDATE; END IF; "
        f"IF {_SOURCE_REFUSED} THEN RAISE EXCEPTION 'sorae ledger: {_SOURCE_MESSAGE}' USING ERRCODE = 'P0001'; "
        "END IF; RETURN NEW; END $$"
    )
    op.execute(f"CREATE TRIGGER {name} BEFORE INSERT ON transfer_attempt FOR EACH ROW EXECUTE FUNCTION {name}()")


_MINIMUM = {
    "sqlite": "json_extract(b.policy, '$.minimum_minor.' || i.currency), "
    "json_extract(b.policy, '$.default_minimum_minor')",
    "postgresql": "b.policy -> 'minimum_minor' ->> i.currency, b.policy ->> 'default_minimum_minor'",
}

# Columns 1-29 as in revision 0009, now scoped by program; program_id is added last.
_VIEW_SQL = """
CREATE VIEW affiliate_payout_history AS
SELECT i.payout_item_id,
       i.affiliate_id,
       b.period,
       i.batch_id,
       i.currency,
       i.commission_count,
       i.period_amount_minor AS earned_minor,
       i.carried_in_minor,
       i.amount_minor,
       i.status AS item_status,
       i.carry_reason,
       i.hold_reason,
       CAST(COALESCE({minimum}) AS BIGINT) AS minimum_minor,
       a.attempt_number,
       a.state AS attempt_state,
       a.stripe_transfer_id,
       a.error_code,
       CAST(COALESCE((SELECT SUM(c.amount_minor) FROM commission c
                      WHERE c.program_id = i.program_id AND c.affiliate_id = i.affiliate_id
                        AND c.period = b.period AND c.currency = i.currency), 0) AS BIGINT) AS gross_minor,
       CAST(COALESCE((SELECT SUM(j.amount_minor) FROM commission_adjustment j
                      WHERE j.booked_period = b.period AND j.program_id = i.program_id AND j.kind = 'in_period'
                        AND j.affiliate_id = i.affiliate_id AND j.currency = i.currency), 0) AS BIGINT)
           AS in_period_adjustments_minor,
       CAST(COALESCE((SELECT SUM(j.amount_minor) FROM commission_adjustment j
                      WHERE j.booked_period = b.period AND j.program_id = i.program_id AND j.kind = 'clawback'
                        AND j.affiliate_id = i.affiliate_id AND j.currency = i.currency), 0) AS BIGINT)
           AS clawbacks_minor,
       i.reversed_minor,
       (SELECT MAX(e.recorded_at) FROM transfer_status_event e JOIN transfer_attempt x ON x.attempt_pk = e.attempt_pk
        WHERE x.payout_item_id = i.payout_item_id AND e.amount_reversed_minor > 0) AS reversed_at,
       CAST(COALESCE((SELECT SUM(d.amount_minor) FROM reversal_decision d
                      WHERE d.payout_item_id = i.payout_item_id AND d.decision = 'owe_again'), 0) AS BIGINT)
           AS owed_again_minor,
       CAST(COALESCE((SELECT SUM(d.amount_minor) FROM reversal_decision d
                      WHERE d.payout_item_id = i.payout_item_id AND d.decision = 'write_off'), 0) AS BIGINT)
           AS written_off_minor,
       CAST(i.reversed_minor - COALESCE((SELECT SUM(d.amount_minor) FROM reversal_decision d
                                         WHERE d.payout_item_id = i.payout_item_id), 0) AS BIGINT)
           AS reversal_pending_minor,
       (SELECT MIN(ob.period) FROM owed_again_carry o JOIN reversal_decision d ON d.decision_pk = o.decision_pk
        JOIN payout_batch ob ON ob.batch_id = o.batch_id WHERE d.payout_item_id = i.payout_item_id)
           AS owed_again_in_period,
       (SELECT MIN(nb.period) FROM payout_batch nb WHERE nb.program_id = i.program_id AND nb.period > b.period)
           AS next_batch_period,
       CAST(CASE WHEN i.status IN ('pending', 'processing', 'failed', 'blocked') AND i.amount_minor > 0
                 THEN i.amount_minor ELSE 0 END AS BIGINT) AS outstanding_minor,
       i.program_id
FROM payout_item i
JOIN payout_batch b ON b.batch_id = i.batch_id
LEFT JOIN transfer_attempt a ON a.payout_item_id = i.payout_item_id AND a.attempt_number =
     (SELECT MAX(x.attempt_number) FROM transfer_attempt x WHERE x.payout_item_id = i.payout_item_id)
"""


def view_sql(dialect: str) -> str:
    return _VIEW_SQL.format(minimum=_MINIMUM[dialect])
