"""Revision 0050's tables, columns and guards, frozen history (see versions/0050_signed_operators.py)."""

from __future__ import annotations

import sqlalchemy as sa

PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TS = sa.DateTime(timezone=True)
PROGRAM = sa.String(64)
KEY_ID = sa.String(64)  # SHA-256 hex of the raw public key
SIGNATURE_LENGTH = 88  # base64 of a 64-byte Ed25519 signature
RECOVERY_DECIDER = "policy:recover_by_reversal"  # aftercare.recovery.RECOVERY_DECIDER, frozen here

NEW_TABLES = (
    "operator_bootstrap",
    "operator_request",
    "operator_confirmation",
    "operator_key",
    "program_approval_policy",
    "approval_legacy_batch",
)
REQUEST_KINDS = ("add", "enable", "rename", "rekey", "disable", "policy")
ADD_OR_REKEY, IS_ENABLE, IS_RENAME = "IN ('add', 'rekey')", "= 'enable'", "= 'rename'"


def _origin() -> list[sa.Column]:
    return [sa.Column("host", sa.Text), sa.Column("os_user", sa.Text), sa.Column("dagster_run_id", sa.Text)]


def new_tables() -> list[sa.Table]:
    md = sa.MetaData()
    sa.Table("program", md, sa.Column("program_id", PROGRAM, primary_key=True))
    sa.Table("payout_batch", md, sa.Column("batch_id", sa.String(64), primary_key=True))
    program_fk = sa.ForeignKey("program.program_id")
    bootstrap = sa.Table(
        "operator_bootstrap",
        md,
        sa.Column("bootstrap_pk", PK, primary_key=True, autoincrement=True),
        sa.Column("program_id", PROGRAM, program_fk, nullable=False),
        sa.Column("operator_count", sa.Integer, nullable=False),
        sa.Column("recorded_by", sa.Text, nullable=False),
        sa.Column("recorded_at", TS, nullable=False),
        *_origin(),
        sa.CheckConstraint("operator_count > 0", name="ck_operator_bootstrap_count"),
    )
    request = sa.Table(
        "operator_request",
        md,
        sa.Column("request_pk", PK, primary_key=True, autoincrement=True),
        sa.Column("program_id", PROGRAM, sa.ForeignKey("program.program_id"), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("subject", sa.Text),  # the operator it changes; NULL for a policy change
        sa.Column("display_name", sa.Text),
        sa.Column("key_id", KEY_ID),
        sa.Column("public_key", sa.Text),
        sa.Column("policy_value", sa.Text),  # canonical JSON of the new dual-approval thresholds, or NULL
        sa.Column("requested_by", sa.Text, nullable=False),
        sa.Column("requester_key_id", KEY_ID, nullable=False),
        sa.Column("requested_at", TS, nullable=False),
        sa.Column("signature", sa.Text, nullable=False),
        *_origin(),
        sa.CheckConstraint(f"kind IN ({', '.join(repr(k) for k in REQUEST_KINDS)})", name="ck_operator_request_kind"),
        sa.CheckConstraint("(kind = 'policy') = (subject IS NULL)", name="ck_operator_request_subject"),
        sa.CheckConstraint(f"length(signature) = {SIGNATURE_LENGTH}", name="ck_operator_request_signature"),
        sa.Index("ix_operator_request_program", "program_id", "requested_at"),
    )
    confirmation = sa.Table(
        "operator_confirmation",
        md,
        sa.Column("confirmation_pk", PK, primary_key=True, autoincrement=True),
        sa.Column("request_pk", sa.BigInteger, sa.ForeignKey("operator_request.request_pk"), nullable=False),
        sa.Column("program_id", PROGRAM, nullable=False),
        sa.Column("confirmed_by", sa.Text, nullable=False),
        sa.Column("confirmer_key_id", KEY_ID, nullable=False),
        sa.Column("confirmed_at", TS, nullable=False),
        sa.Column("signature", sa.Text, nullable=False),
        *_origin(),
        sa.UniqueConstraint("request_pk", name="uq_operator_confirmation_request"),
        sa.CheckConstraint(f"length(signature) = {SIGNATURE_LENGTH}", name="ck_operator_confirmation_signature"),
    )
    key = sa.Table(
        "operator_key",
        md,
        sa.Column("key_pk", PK, primary_key=True, autoincrement=True),
        sa.Column("program_id", PROGRAM, nullable=False),
        sa.Column("operator_id", sa.Text, nullable=False),
        sa.Column("key_id", KEY_ID, nullable=False),
        sa.Column("public_key", sa.Text, nullable=False),
        sa.Column("registered_at", TS, nullable=False),
        sa.Column("bootstrap_pk", sa.BigInteger, sa.ForeignKey("operator_bootstrap.bootstrap_pk")),
        sa.Column("request_pk", sa.BigInteger, sa.ForeignKey("operator_request.request_pk")),
        sa.UniqueConstraint("program_id", "key_id", name="uq_operator_key_program_key"),
        sa.CheckConstraint("(bootstrap_pk IS NULL) <> (request_pk IS NULL)", name="ck_operator_key_source"),
        sa.Index("ix_operator_key_operator", "program_id", "operator_id"),
    )
    policy = sa.Table(
        "program_approval_policy",
        md,
        sa.Column("policy_pk", PK, primary_key=True, autoincrement=True),
        sa.Column("program_id", PROGRAM, sa.ForeignKey("program.program_id"), nullable=False),
        sa.Column("dual_approval_over_minor", sa.Text),  # JSON {currency: minor} overriding the deployment's
        sa.Column("request_pk", sa.BigInteger, sa.ForeignKey("operator_request.request_pk")),  # NULL: initial
        sa.Column("recorded_at", TS, nullable=False),
        sa.Index("ix_program_approval_policy_program", "program_id"),
    )
    legacy = sa.Table(
        "approval_legacy_batch",
        md,
        sa.Column("batch_id", sa.String(64), sa.ForeignKey("payout_batch.batch_id"), primary_key=True),
    )
    return [bootstrap, request, confirmation, key, policy, legacy]


def new_columns() -> list[tuple[str, sa.Column]]:
    return [
        ("operator", sa.Column("key_id", KEY_ID)),
        ("operator", sa.Column("request_pk", sa.BigInteger)),
        ("operator", sa.Column("bootstrap_pk", sa.BigInteger)),
        ("batch_approval", sa.Column("key_id", KEY_ID)),
        ("batch_approval", sa.Column("signature", sa.Text)),
        ("reversal_decision", sa.Column("operator_id", sa.Text)),
        ("reversal_decision", sa.Column("key_id", KEY_ID)),
        ("reversal_decision", sa.Column("signature", sa.Text)),
    ]


def approval_part(column: str, sqlite: bool) -> str:
    """The dual-approval thresholds of a program policy column, comparable across rows (NULL when unset)."""
    if sqlite:
        return f"json_extract({column}, '$.dual_approval_over_minor')"
    return f"(CAST({column} AS jsonb) -> 'dual_approval_over_minor')"


def _owner(sqlite: bool) -> str:
    """True when the session is the database owner of the registry (PostgreSQL); SQLite has no roles."""
    if sqlite:
        return "1 = 1"
    return (
        "pg_has_role(current_user, (SELECT t.tableowner FROM pg_tables t WHERE t.schemaname = current_schema() "
        "AND t.tablename = 'operator_bootstrap'), 'MEMBER')"
    )


def _confirmed(alias: str, row: str, kind: str) -> str:
    """A confirmed request `alias` of `kind` changing operator {row}.operator_id in its program."""
    return (
        f"EXISTS (SELECT 1 FROM operator_request {alias} JOIN operator_confirmation {alias}c "
        f"ON {alias}c.request_pk = {alias}.request_pk WHERE {alias}.request_pk = {row}.request_pk "
        f"AND {alias}.program_id = {row}.program_id AND {alias}.kind {kind} AND {alias}.subject = {row}.operator_id"
    )


_ACTIVE_WITH_KEY = (
    "EXISTS (SELECT 1 FROM operator o WHERE o.program_id = NEW.program_id AND o.operator_id = {who} "
    "AND o.status = 'active' AND o.key_id = {key})"
)
_BOOTSTRAP_KEY = (
    "(NEW.key_id IS DISTINCT FROM OLD.key_id AND NEW.bootstrap_pk IS NOT NULL AND EXISTS (SELECT 1 FROM operator_key k "
    "WHERE k.program_id = NEW.program_id AND k.operator_id = NEW.operator_id AND k.key_id = NEW.key_id "
    "AND k.bootstrap_pk = NEW.bootstrap_pk))"
)
_LAST_DISABLED = (
    "(SELECT MAX(e.recorded_at) FROM operator_event e WHERE e.program_id = NEW.program_id "
    "AND e.operator_id = NEW.operator_id AND e.event = 'disabled')"
)


def guards(sqlite: bool) -> list[tuple[str, str, str, str, str]]:
    """(trigger name, table, event, refusing condition, message), created by revision_0012_guards.create_guard."""
    owner = _owner(sqlite)
    first_bootstrap = (
        "EXISTS (SELECT 1 FROM operator_bootstrap b WHERE b.program_id = NEW.program_id) "
        "OR EXISTS (SELECT 1 FROM operator_key k WHERE k.program_id = NEW.program_id)"
    )
    bootstrap_refused = f"NOT ({owner})" if not sqlite else first_bootstrap
    bootstrap_key = (
        f"(NEW.bootstrap_pk IS NOT NULL AND ({owner}) AND EXISTS (SELECT 1 FROM operator_bootstrap b "
        "WHERE b.bootstrap_pk = NEW.bootstrap_pk AND b.program_id = NEW.program_id AND b.operator_count > "
        "(SELECT COUNT(*) FROM operator_key x WHERE x.bootstrap_pk = NEW.bootstrap_pk)))"
    )
    requested_key = (
        f"(NEW.request_pk IS NOT NULL AND {_confirmed('r', 'NEW', ADD_OR_REKEY)} "
        "AND r.key_id = NEW.key_id AND r.public_key = NEW.public_key) "
        "AND NOT EXISTS (SELECT 1 FROM operator_key x WHERE x.request_pk = NEW.request_pk))"
    )
    fresh = "NEW.request_pk IS DISTINCT FROM OLD.request_pk"
    enable_request = (
        f"({fresh} AND {_confirmed('r', 'NEW', IS_ENABLE)} "
        f"AND rc.confirmed_at >= COALESCE({_LAST_DISABLED}, rc.confirmed_at)))"
    )
    rename_request = f"({fresh} AND {_confirmed('r', 'NEW', IS_RENAME)} AND r.display_name = NEW.display_name))"
    policy_value = "NEW.dual_approval_over_minor IS NOT DISTINCT FROM r.policy_value"
    policy_request = (
        "EXISTS (SELECT 1 FROM operator_request r JOIN operator_confirmation rc ON rc.request_pk = r.request_pk "
        "WHERE r.request_pk = NEW.request_pk AND r.program_id = NEW.program_id AND r.kind = 'policy' "
        f"AND {policy_value})"
    )
    latest_policy = (
        "(SELECT {value} FROM program_approval_policy p WHERE p.program_id = NEW.program_id "
        "ORDER BY p.policy_pk DESC LIMIT 1)"
    ).format(value="json(p.dual_approval_over_minor)" if sqlite else "CAST(p.dual_approval_over_minor AS jsonb)")
    new_part, old_part = approval_part("NEW.policy", sqlite), approval_part("OLD.policy", sqlite)
    signature_bad = f"NEW.signature IS NULL OR length(NEW.signature) <> {SIGNATURE_LENGTH}"
    item_program = "(SELECT i.program_id FROM payout_item i WHERE i.payout_item_id = NEW.payout_item_id)"
    return [
        *[
            (f"guard_{table}_{ev.lower()}", table, ev, "1 = 1", f"{table} rows are append-only")
            for table in NEW_TABLES
            for ev in ("UPDATE", "DELETE")
        ],
        (
            "guard_approval_legacy_batch_insert",
            "approval_legacy_batch",
            "INSERT",
            "1 = 1",
            "the batches approved before signed approvals were fixed by revision 0050",
        ),
        (
            "guard_operator_bootstrap_insert",
            "operator_bootstrap",
            "INSERT",
            bootstrap_refused,
            "operators are registered without a confirmation (bootstrap) only by the database owner "
            "(on SQLite: once, for a program that has no operator key yet)",
        ),
        (
            "guard_operator_key_insert",
            "operator_key",
            "INSERT",
            f"NOT ({bootstrap_key} OR {requested_key})",
            "an operator key is registered by a bootstrap of the database owner or by a request confirmed by "
            "another operator, once",
        ),
        (
            "guard_operator_insert_keyed",
            "operator",
            "INSERT",
            "NEW.key_id IS NULL OR NEW.status <> 'active' OR NOT EXISTS (SELECT 1 FROM operator_key k "
            "WHERE k.program_id = NEW.program_id AND k.operator_id = NEW.operator_id AND k.key_id = NEW.key_id)",
            "a new operator needs its registered key (bootstrap or confirmed request)",
        ),
        (
            "guard_operator_key_change",
            "operator",
            "UPDATE",
            "NEW.key_id IS DISTINCT FROM OLD.key_id AND (NEW.key_id IS NULL OR NEW.key_id IS DISTINCT FROM "
            "(SELECT k.key_id FROM operator_key k WHERE k.program_id = NEW.program_id AND k.operator_id = "
            "NEW.operator_id ORDER BY k.key_pk DESC LIMIT 1))",
            "an operator key changes only to the latest key registered for the operator",
        ),
        (
            "guard_operator_enable",
            "operator",
            "UPDATE",
            f"OLD.status <> 'active' AND NEW.status = 'active' AND NOT ({enable_request} OR {_BOOTSTRAP_KEY})",
            "an operator is enabled only by a request confirmed by another operator (or a bootstrap)",
        ),
        (
            "guard_operator_rename",
            "operator",
            "UPDATE",
            f"NEW.display_name IS DISTINCT FROM OLD.display_name AND NOT ({rename_request} OR {_BOOTSTRAP_KEY})",
            "an operator is renamed only by a request confirmed by another operator (or a bootstrap)",
        ),
        (
            "guard_operator_request_insert",
            "operator_request",
            "INSERT",
            f"NOT {_ACTIVE_WITH_KEY.format(who='NEW.requested_by', key='NEW.requester_key_id')}",
            "a registry request is signed with the current key of an active operator of the program",
        ),
        (
            "guard_operator_confirmation_insert",
            "operator_confirmation",
            "INSERT",
            f"NOT {_ACTIVE_WITH_KEY.format(who='NEW.confirmed_by', key='NEW.confirmer_key_id')} "
            "OR NOT EXISTS (SELECT 1 FROM operator_request r WHERE r.request_pk = NEW.request_pk "
            "AND r.program_id = NEW.program_id AND r.kind <> 'disable' AND r.requested_by <> NEW.confirmed_by "
            "AND (r.subject IS NULL OR r.subject <> NEW.confirmed_by) AND EXISTS (SELECT 1 FROM operator q "
            "WHERE q.program_id = r.program_id AND q.operator_id = r.requested_by AND q.status = 'active'))",
            "a registry request is confirmed by another active operator of the program (not its requester "
            "nor its subject) with their current key",
        ),
        (
            "guard_program_approval_policy_insert",
            "program_approval_policy",
            "INSERT",
            "(NEW.request_pk IS NULL AND EXISTS (SELECT 1 FROM program_approval_policy p WHERE p.program_id = "
            f"NEW.program_id)) OR (NEW.request_pk IS NOT NULL AND (NOT {policy_request} OR EXISTS (SELECT 1 FROM "
            "program_approval_policy p WHERE p.request_pk = NEW.request_pk)))",
            "the approval thresholds of a program change only by a policy request confirmed by another operator, once",
        ),
        (
            "guard_program_approval_thresholds",
            "program",
            "UPDATE",
            f"{new_part} IS DISTINCT FROM {old_part} AND {new_part} IS DISTINCT FROM {latest_policy}",
            "the dual-approval thresholds of a program change only to a confirmed approval policy",
        ),
        (
            "guard_batch_approval_signed",
            "batch_approval",
            "INSERT",
            f"{signature_bad} OR NEW.key_id IS NULL OR NEW.approved_by IS DISTINCT FROM NEW.operator_id OR NOT "
            f"{_ACTIVE_WITH_KEY.format(who='NEW.operator_id', key='NEW.key_id')}",
            "an approval carries the signature and current key of an active operator of the program",
        ),
        (
            "guard_reversal_decision_signed",
            "reversal_decision",
            "INSERT",
            f"NEW.program_id IS DISTINCT FROM {item_program} OR (NEW.reversal_request_pk IS NULL AND ({signature_bad} "
            "OR NEW.key_id IS NULL OR NEW.operator_id IS DISTINCT FROM NEW.decided_by OR NOT "
            f"{_ACTIVE_WITH_KEY.format(who='NEW.operator_id', key='NEW.key_id')})) OR (NEW.reversal_request_pk IS "
            f"NOT NULL AND (NEW.decided_by <> '{RECOVERY_DECIDER}' OR NEW.operator_id IS NOT NULL OR NOT EXISTS "
            "(SELECT 1 FROM transfer_reversal_request q WHERE q.request_pk = NEW.reversal_request_pk "
            "AND q.payout_item_id = NEW.payout_item_id AND q.program_id = NEW.program_id)))",
            "a reversal decision is signed by an active operator of the program of its item (or is the "
            "decision of the recovery policy, naming its reversal request)",
        ),
    ]


PROGRAM_INSERT_TRIGGER = "program_initial_approval_policy"


def create_program_insert_trigger(op, sqlite: bool) -> None:
    """Every new program's first `program_approval_policy` row, written by the database itself."""
    part = approval_part("NEW.policy", sqlite)
    values = f"NEW.program_id, {part if sqlite else f'CAST({part} AS text)'}, NULL, NEW.created_at"
    insert = (
        "INSERT INTO program_approval_policy (program_id, dual_approval_over_minor, request_pk, recorded_at) "
        f"VALUES ({values})"
    )
    if sqlite:
        op.execute(f"CREATE TRIGGER {PROGRAM_INSERT_TRIGGER} AFTER INSERT ON program FOR EACH ROW BEGIN {insert}; END")
        return
    op.execute(
        f"CREATE FUNCTION {PROGRAM_INSERT_TRIGGER}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN {insert}; "
        "RETURN NULL; END $$"
    )
    op.execute(
        f"CREATE TRIGGER {PROGRAM_INSERT_TRIGGER} AFTER INSERT ON program FOR EACH ROW "
        f"EXECUTE FUNCTION {PROGRAM_INSERT_TRIGGER}()"
    )


def drop_program_insert_trigger(op, sqlite: bool) -> None:
    op.execute(f"DROP TRIGGER IF EXISTS {PROGRAM_INSERT_TRIGGER}" + ("" if sqlite else " ON program"))
    if not sqlite:
        op.execute(f"DROP FUNCTION IF EXISTS {PROGRAM_INSERT_TRIGGER}()")
