"""Affiliates: who gets paid, where (Stripe connected account) and in which payout currency.

Affiliates are master data, not facts: the affiliate platform's export is the current truth. An
affiliate_id already in the ledger with different content is therefore UPDATED (counted as
`updated`), which is how onboarding arrives (an empty `stripe_account_id` later filled with
`acct_...`) and how an email or name change arrives. An empty `stripe_account_id` in the file means
"not onboarded (any more)" and clears the stored one. Identical content is `already_present`.
Within one file, one affiliate_id with two different contents is still rejected (all those rows):
the file contradicts itself and neither version can be trusted.

Updates do not reach payouts already built: payout items snapshot the destination account.

An affiliate id is unique within its program: one person may be an affiliate of several programs, each
record with the connected account that fits that program's paying account.

`allow_shared_destination` (optional column; `true`/`false`, also yes/no/1/0) marks an affiliate whose
connected account may also be another affiliate's. Empty (or no such column) keeps the stored value,
false for a new affiliate: an export without the column never revokes a permission given earlier.
Without it, an item paid into a shared account is held at execution pre-flight
(`sorae_payouts.execution.shared_destinations`).
"""

from __future__ import annotations

from datetime import datetime

import pandas as pd

from sorae_payouts.ingest.checks import RowChecks
from sorae_payouts.ingest.model import ImportKind, Written
from sorae_payouts.ingest.staging import STAGE, KindSpec, StagingArea

COLUMNS = ("affiliate_id", "name", "email", "stripe_account_id", "currency", "allow_shared_destination")
OPTIONAL = ("allow_shared_destination",)
PARSED = (("allow_shared", "int"),)
_TRUE, _FALSE = ("true", "yes", "1"), ("false", "no", "0")
_EMAIL = r"[^@ \t\r\n]+@[^@ \t\r\n]+"
_STRIPE_ACCOUNT = r"acct_[A-Za-z0-9]+"
_FIELDS = ("name", "email", "stripe_account_id", "currency")


def validate(chunk: pd.DataFrame, checks: RowChecks) -> pd.DataFrame:
    """Row-level rules: id, name, email (one @) and currency present and well-formed; the Stripe
    account, when present, looks like acct_..."""
    checks.require("affiliate_id", "name", "email", "currency")
    checks.no_nul(*(c for c in COLUMNS if c in chunk))  # the optional column may be absent for direct callers
    checks.identifier("affiliate_id", "stripe_account_id")
    email = chunk["email"]
    checks.fail(
        (email != "") & ~email.str.fullmatch(_EMAIL),
        "email",
        "not an email address (expected exactly one @ with text on both sides, no spaces)",
    )
    account = chunk["stripe_account_id"]
    checks.fail(
        (account != "") & ~account.str.fullmatch(_STRIPE_ACCOUNT),
        "stripe_account_id",
        "not a Stripe connected account id (expected acct_ followed by letters and digits, or empty "
        "when not onboarded yet)",
    )
    checks.currency("currency")
    flag = pd.Series(pd.NA, index=chunk.index, dtype="Int64")  # <NA>: keep the stored value
    if "allow_shared_destination" in chunk:
        shared = chunk["allow_shared_destination"].str.lower()
        checks.fail(
            ~shared.isin(_TRUE + _FALSE + ("",)),
            "allow_shared_destination",
            "not true or false (also yes/no, 1/0; empty keeps the current value)",
        )
        flag = flag.mask(shared.isin(_TRUE), 1).mask(shared.isin(_FALSE), 0)
    return pd.DataFrame({"allow_shared": flag}, index=chunk.index)


def apply(db: StagingArea, now: datetime) -> Written:
    """In-file conflicts, then one UPDATE of changed affiliates and one INSERT of new ones, in their program."""
    db.lock("affiliate")
    program = db.program.sql("s")
    same = f"a.program_id = {program} AND a.affiliate_id = s.affiliate_id"
    db.reject_in_file_conflicts(
        ["s.name", "s.email", "COALESCE(s.stripe_account_id, '')", "s.currency", "s.allow_shared"]
    )
    loadable = f"s.ok = 1 AND {db.not_rejected}"
    shared = _as_bool(db, "s.allow_shared")
    changed = " OR ".join(
        [
            *(db.differs(f"a.{c}", f"s.{c}") for c in _FIELDS),
            f"(s.allow_shared IS NOT NULL AND {db.differs('a.allow_shared_destination', shared)})",
        ]
    )
    updated = db.execute(
        "UPDATE affiliate AS a SET name = s.name, email = s.email, stripe_account_id = s.stripe_account_id, "
        f"currency = s.currency, allow_shared_destination = COALESCE({shared}, a.allow_shared_destination), "
        f"imported_at = :now FROM {STAGE} s "
        f"WHERE {same} AND {loadable} AND {db.first_of_id} AND ({changed})",
        now=now,
    ).rowcount
    inserted = db.execute(
        "INSERT INTO affiliate (program_id, affiliate_id, name, email, stripe_account_id, currency, "
        f"allow_shared_destination, imported_at) SELECT {program}, s.affiliate_id, s.name, s.email, "
        "s.stripe_account_id, s.currency, "
        f"COALESCE({shared}, {_as_bool(db, '0')}), :now "
        f"FROM {STAGE} s "
        f"WHERE {loadable} AND {db.first_of_id} "
        f"AND NOT EXISTS (SELECT 1 FROM affiliate a WHERE {same}) ORDER BY s.row_no",
        now=now,
    ).rowcount
    return Written(inserted=inserted, updated=updated)


def _as_bool(db: StagingArea, column: str) -> str:
    """The staged 0/1 as the ledger's boolean (SQLite stores 0/1, PostgreSQL has a boolean type)."""
    return column if db.dialect == "sqlite" else f"({column} = 1)"


SPEC = KindSpec(ImportKind.AFFILIATES, COLUMNS, "affiliate_id", PARSED, validate, apply, optional=OPTIONAL)
