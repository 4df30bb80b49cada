"""Building one month's payout batches for a whole set of programs, in a fixed number of statements.

Each program gets its own batch (`manifest.batch_id_for`) under its own effective policy, from its own
rows only; the rules of `manifest` hold per program (built in period order, a draft rebuilt only while
no later batch exists, an approved batch frozen). What differs is the cost: the checks, the batch rows,
the carries, the items and the hashes of 1,000 programs take the same dozen statements as one program's.
A program whose month cannot be built now is refused alone; the others are built.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime

import sqlalchemy as sa

from sorae_payouts.core.periods import period_key
from sorae_payouts.ledger import schema
from sorae_payouts.ledger.sql import allow_large_sorts, as_date, set_text, values_cte
from sorae_payouts.month_end.carry import CARRIED_UNPAID_SQL, close_unpaid_items_into
from sorae_payouts.month_end.carry_check import UnpaidCheck, confirm_unpaid
from sorae_payouts.month_end.manifest import (
    ManifestReport,
    PayoutPolicy,
    batch_id_for,
    effective_policy,
    manifest_hashes,
    manifest_reports,
)
from sorae_payouts.month_end.program_sets import (
    ProgramOutcomes,
    ProgramRefused,
    active_programs,
    parallel_workers,
    split_programs,
    unique_ids,
)
from sorae_payouts.registry.programs import DEFAULT_PROGRAM

# Items: per program, affiliate and currency, the month's commissions (aggregated in the order of
# `ix_commission_affiliate_period`, without a hash of a million groups) plus the small "other" sources
# (adjustments and clawbacks booked in the month, balances carried from the previous batch, unpaid items
# of earlier batches, owed-again money), joined to them; "other" rows without a commission this month
# follow. Each program's batch and minimums come as bound values (`batches`, `minimums`), so the planner
# knows their sizes even before statistics see the new batches. Inserted in program, affiliate and
# currency order: each batch's items lie together on disk and every index grows at its right edge
# (random-order inserts into three indexes cost several times more at a million items).
_BUILD_ITEMS = """
WITH {minimums}, {batches},
other AS (
    SELECT program_id, affiliate_id, currency, SUM(earned) AS earned, SUM(carried) AS carried FROM (
        SELECT program_id, affiliate_id, currency, amount_minor AS earned, 0 AS carried
        FROM commission_adjustment WHERE booked_period = :period AND program_id IN :program_ids
        UNION ALL
        SELECT program_id, affiliate_id, currency, 0, amount_minor
        FROM payout_item WHERE batch_id IN :prev_batch_ids AND status = 'carried_forward'
                               AND carry_reason IS NOT NULL AND amount_minor <> 0
        UNION ALL{carried_unpaid}
        UNION ALL
        SELECT b.program_id, o.affiliate_id, o.currency, 0, o.amount_minor
        FROM owed_again_carry o JOIN payout_batch b ON b.batch_id = o.batch_id WHERE o.batch_id IN :batch_ids
    ) parts GROUP BY program_id, affiliate_id, currency
),
month AS (
    SELECT program_id, affiliate_id, currency, COUNT(*) AS cnt, SUM(amount_minor) AS earned
    FROM commission WHERE period = :period AND program_id IN :program_ids GROUP BY program_id, affiliate_id, currency
),
totals AS (
    SELECT m.program_id, m.affiliate_id, m.currency, m.cnt, m.earned + COALESCE(o.earned, 0) AS earned,
           COALESCE(o.carried, 0) AS carried
    FROM month m LEFT JOIN other o
      ON o.program_id = m.program_id AND o.affiliate_id = m.affiliate_id AND o.currency = m.currency
    UNION ALL
    SELECT o.program_id, o.affiliate_id, o.currency, 0, o.earned, o.carried FROM other o
    WHERE NOT EXISTS (SELECT 1 FROM commission c WHERE c.program_id = o.program_id AND c.affiliate_id = o.affiliate_id
                      AND c.period = :period AND c.currency = o.currency)
)
INSERT INTO payout_item (program_id, batch_id, affiliate_id, currency, stripe_account_id, commission_count,
                         period_amount_minor, carried_in_minor, amount_minor, status, carry_reason)
SELECT t.program_id, t.batch_id, t.affiliate_id, t.currency, a.stripe_account_id, t.cnt, t.earned, t.carried,
       t.earned + t.carried,
       CASE WHEN t.earned + t.carried >= t.minimum AND a.stripe_account_id IS NOT NULL
            THEN 'pending' ELSE 'carried_forward' END,
       CASE WHEN t.earned + t.carried < 0 THEN 'negative_balance'
            WHEN t.earned + t.carried = 0 THEN 'zero_balance'
            WHEN t.earned + t.carried < t.minimum THEN 'below_minimum'
            WHEN a.stripe_account_id IS NULL THEN 'not_onboarded'
            ELSE NULL END
FROM (
    SELECT s.program_id, b.batch_id, s.affiliate_id, s.currency, s.cnt, s.earned, s.carried,
           CAST(COALESCE(m.minimum_minor, b.default_minimum_minor) AS BIGINT) AS minimum
    FROM totals s
    JOIN batches b ON b.program_id = s.program_id
    LEFT JOIN minimums m ON m.program_id = s.program_id AND m.currency = s.currency
) t JOIN affiliate a ON a.program_id = t.program_id AND a.affiliate_id = t.affiliate_id
ORDER BY t.program_id, t.affiliate_id, t.currency
"""

# Carried-in source "owed again": reversed money an operator decided is owed again
# (`operations.reversals`), not yet carried by any batch, from an earlier month of the same program.
# The rows tie each decision to the one batch that carries it (unique per decision); a draft rebuild
# re-derives them.
_CARRY_OWED_AGAIN = """
INSERT INTO owed_again_carry (decision_pk, batch_id, affiliate_id, currency, amount_minor)
SELECT d.decision_pk, nb.batch_id, d.affiliate_id, d.currency, d.amount_minor
FROM payout_batch nb
JOIN payout_batch rb ON rb.program_id = nb.program_id AND rb.period < nb.period
JOIN payout_item ri ON ri.batch_id = rb.batch_id
JOIN reversal_decision d ON d.payout_item_id = ri.payout_item_id
WHERE nb.batch_id IN :batch_ids AND d.decision = 'owe_again'
  AND NOT EXISTS (SELECT 1 FROM owed_again_carry o WHERE o.decision_pk = d.decision_pk)
"""


def build_manifests(
    engine: sa.Engine,
    period: date,
    program_ids: Iterable[str],
    *,
    policy: PayoutPolicy,
    now: datetime,
    policies_by_program: Mapping[str, PayoutPolicy] | None = None,
    workers: int | None = None,
    unpaid_check: UnpaidCheck | None = None,
) -> ProgramOutcomes[ManifestReport]:
    """Create (or rebuild, while draft) the period's batch of every program of the set. A program's
    policy is `policies_by_program[p]` if given, else `effective_policy(policy, program)`; it is frozen
    into the batch. Approved batches are reported `frozen`; programs not finalized, out of order, unknown
    or disabled are refused alone.

    The set is split into slices of consecutive programs (at least `workers`, default `parallel_workers`,
    and at most MAX_PROGRAMS_PER_STATEMENT programs each), each built in its own transaction and
    connection, `workers` at the same time; programs are independent, so a
    slice commits or fails alone (a database error in one slice is raised after the others finished;
    running the set again rebuilds their drafts unchanged).

    Unpaid items of earlier batches are carried only after Stripe confirms they were not paid
    (`carry_check`, through `unpaid_check`); a program whose item Stripe says was paid, or that has
    something to carry and no `unpaid_check`, is refused alone."""
    ids = unique_ids(program_ids)
    not_confirmed = confirm_unpaid(engine, period, ids, unpaid_check)
    ids = [p for p in ids if p not in not_confirmed]
    workers = parallel_workers(engine, ids) if workers is None else max(1, workers)
    slices = split_programs(ids, workers)
    build = lambda part: _build_slice(engine, period, part, policy, now, policies_by_program or {})  # noqa: E731
    if len(slices) <= 1:
        outcomes = build(ids)
        outcomes.refused.update(not_confirmed)
        return outcomes
    with ThreadPoolExecutor(min(workers, len(slices)), thread_name_prefix="build-manifests") as pool:
        parts = [pool.submit(build, part) for part in slices]
    outcomes: ProgramOutcomes[ManifestReport] = ProgramOutcomes(refused=dict(not_confirmed))
    for part in parts:  # .result() raises a slice's error once every slice is done
        outcomes.reports.update(part.result().reports)
        outcomes.refused.update(part.result().refused)
    return outcomes


def _build_slice(
    engine: sa.Engine,
    period: date,
    ids: list[str],
    policy: PayoutPolicy,
    now: datetime,
    given: Mapping[str, PayoutPolicy],
) -> ProgramOutcomes[ManifestReport]:
    dropped: dict[str, str] = {}
    while True:  # a program whose unpaid item moved under a concurrent claim drops out; the rest is rebuilt
        try:
            outcomes = _build_once(engine, period, [p for p in ids if p not in dropped], policy, now, given)
        except ProgramRefused as exc:
            dropped.update(exc.reasons)
            continue
        outcomes.refused.update(dropped)
        return outcomes


def _of(program_id: str) -> str:
    return "" if program_id == DEFAULT_PROGRAM else f" of program {program_id}"


def _build_once(
    engine: sa.Engine,
    period: date,
    ids: list[str],
    base: PayoutPolicy,
    now: datetime,
    given: Mapping[str, PayoutPolicy],
) -> ProgramOutcomes[ManifestReport]:
    outcomes: ProgramOutcomes[ManifestReport] = ProgramOutcomes()
    with engine.begin() as conn:
        allow_large_sorts(conn)
        programs = active_programs(conn, ids, outcomes)
        state = _ledger_state(conn, period, list(programs))
        frozen, new, rebuilt = {}, [], {}
        for program_id in programs:
            batch = state["batches"].get(program_id)
            name = period_key(period)
            if program_id not in state["finalized"]:
                outcomes.refused[program_id] = (
                    f"period {name}{_of(program_id)} is not finalized; materialize finalized_commissions for it first"
                )
            elif batch is not None and batch.status != "draft":
                frozen[program_id] = (batch.batch_id, "frozen")
            elif program_id in state["later"]:
                later = period_key(state["later"][program_id])
                outcomes.refused[program_id] = (
                    f"a batch for the later period {later}{_of(program_id)} exists; the draft of {name} cannot be "
                    "(re)built without breaking carried balances"
                )
            elif program_id in state["missing"]:
                names = ", ".join(period_key(p) for p in state["missing"][program_id])
                outcomes.refused[program_id] = (
                    f"build the manifests of earlier finalized periods{_of(program_id)} first: {names}"
                )
            elif batch is None:
                new.append(program_id)
            else:
                rebuilt[program_id] = batch
        policies = {p: given.get(p) or effective_policy(base, programs[p]) for p in [*new, *rebuilt]}
        built = _write(conn, period, now, new, rebuilt, policies, state["previous"]) if policies else {}
        outcomes.reports.update(manifest_reports(conn, period, {**frozen, **built}))
    return outcomes


def _ledger_state(conn: sa.Connection, period: date, ids: list[str]) -> dict:
    """Everything the ordering rules need, for every program of the set, in five statements."""
    params = {"period": period, "program_ids": ids}
    scoped = "program_id IN :program_ids"
    finalized = set(
        conn.execute(
            set_text(f"SELECT program_id FROM commission_period WHERE period = :period AND {scoped}"), params
        ).scalars()
    )
    batches = {
        r.program_id: r
        for r in conn.execute(
            set_text(
                "SELECT program_id, batch_id, status, manifest_hash FROM payout_batch WHERE period = :period AND "
                f"{scoped}"
            ),
            params,
        )
    }
    later = {
        p: as_date(m)
        for p, m in conn.execute(
            set_text(
                f"SELECT program_id, MIN(period) FROM payout_batch WHERE period > :period AND {scoped} GROUP BY "
                "program_id"
            ),
            params,
        )
    }
    missing: dict[str, list[date]] = {}
    for program_id, month in conn.execute(
        set_text(
            f"SELECT c.program_id, c.period FROM commission_period c WHERE c.period < :period AND c.{scoped} "
            "AND NOT EXISTS (SELECT 1 FROM payout_batch b WHERE b.program_id = c.program_id AND b.period = c.period) "
            "ORDER BY c.program_id, c.period"
        ),
        params,
    ):
        missing.setdefault(program_id, []).append(as_date(month))
    previous = dict(
        conn.execute(
            set_text(
                f"SELECT b.program_id, b.batch_id FROM payout_batch b WHERE b.{scoped} AND b.period = "
                "(SELECT MAX(p.period) FROM payout_batch p WHERE p.program_id = b.program_id AND p.period < :period)"
            ),
            params,
        ).all()
    )
    return {"finalized": finalized, "batches": batches, "later": later, "missing": missing, "previous": previous}


def _write(
    conn: sa.Connection,
    period: date,
    now: datetime,
    new: list[str],
    rebuilt: dict,
    policies: dict,
    previous: dict[str, str],
) -> dict[str, tuple[str, str]]:
    """The batches' rows, carries, items and hashes; program id -> (batch id, outcome)."""
    batch_ids = {p: rebuilt[p].batch_id if p in rebuilt else batch_id_for(period, p) for p in policies}
    frozen_json = {p: policy.as_json() for p, policy in policies.items()}
    if new:
        conn.execute(
            schema.payout_batch.insert(),
            [
                {
                    "batch_id": batch_ids[p],
                    "program_id": p,
                    "period": period,
                    "status": "draft",
                    "manifest_hash": "",
                    "item_count": 0,
                    "policy": frozen_json[p],
                    "created_at": now,
                    "built_at": now,
                }
                for p in new
            ],
        )
    if rebuilt:
        conn.execute(
            set_text("DELETE FROM payout_item WHERE batch_id IN :batch_ids"),
            {"batch_ids": sorted(b.batch_id for b in rebuilt.values())},
        )
    all_batches = sorted(batch_ids.values())
    close_unpaid_items_into(conn, period, batch_ids, now=now)
    conn.execute(set_text("DELETE FROM owed_again_carry WHERE batch_id IN :batch_ids"), {"batch_ids": all_batches})
    conn.execute(set_text(_CARRY_OWED_AGAIN), {"batch_ids": all_batches})
    minimums, min_params = values_cte(
        "minimums",
        ("program_id", "currency", "minimum_minor"),
        [(p, c, m) for p in sorted(policies) for c, m in sorted(policies[p].minimum_minor.items())],
        "min",
        types=("TEXT", "TEXT", "BIGINT"),
    )
    batches, batch_params = values_cte(
        "batches",
        ("program_id", "batch_id", "default_minimum_minor"),
        [(p, batch_ids[p], policies[p].default_minimum_minor) for p in sorted(policies)],
        "batch",
        types=("TEXT", "TEXT", "BIGINT"),
    )
    conn.execute(
        set_text(_BUILD_ITEMS.format(minimums=minimums, batches=batches, carried_unpaid=CARRIED_UNPAID_SQL)),
        {
            **min_params,
            **batch_params,
            "period": period,
            "program_ids": sorted(policies),
            "batch_ids": all_batches,
            "prev_batch_ids": sorted(previous[p] for p in policies if p in previous),
        },
    )
    hashes = manifest_hashes(conn, {batch_ids[p]: (period, frozen_json[p]) for p in policies})
    conn.execute(
        schema.payout_batch.update()
        .where(schema.payout_batch.c.batch_id == sa.bindparam("b_id"))
        .values(
            manifest_hash=sa.bindparam("b_hash"),
            item_count=sa.bindparam("b_count"),
            built_at=now,
            policy=sa.bindparam("b_policy", type_=sa.JSON),
        ),
        [
            {
                "b_id": batch_ids[p],
                "b_hash": hashes[batch_ids[p]][0],
                "b_count": hashes[batch_ids[p]][1],
                "b_policy": frozen_json[p],
            }
            for p in sorted(policies)
        ],
    )
    outcomes = {p: (batch_ids[p], "built") for p in new}
    for p, batch in rebuilt.items():
        outcomes[p] = (batch.batch_id, "unchanged" if batch.manifest_hash == hashes[batch.batch_id][0] else "rebuilt")
    return outcomes
