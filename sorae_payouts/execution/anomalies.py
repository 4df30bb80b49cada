"""Execution anomalies: what an operator must look at after a run, appended to `execution_anomaly`.

Kinds (each row names the item, attempt and Stripe transfer when known):
- `adopted_from_stripe`: Stripe held a transfer for an item this ledger had not recorded (a rebuilt or
  restored ledger, another deployment); it matched amount, currency and destination and was recorded as
  the item's posted attempt. Nothing was sent.
- `already_paid_outside_this_ledger`: such a transfer did NOT match; the item is `blocked`, nothing sent.
- `idempotency_key_reused`: Stripe refused our key because it was first used with other parameters;
  the item is `blocked`, nothing sent.
- `resent_key_executed_anew`: a key re-sent for an attempt of an earlier run was not replayed by Stripe
  (no `Idempotent-Replayed`): the first send never executed, or Stripe had pruned the key. The group
  scan found no transfer before the send, so this transfer is the only one; worth a look all the same.
- `transfer_mismatch`: the transfer Stripe returned differs from the attempt (amount, currency, destination).
- `second_transfer_for_item`: Stripe holds more than one transfer for one item (a double payment made
  outside this run's control): reverse one in Stripe.
- `transfer_for_unpayable_item` / `unmatched_transfer_in_group`: a transfer in the batch's group for an
  item that is not payable now, or with no payout metadata at all.
- `posted_item_not_pending`: an item has a posted attempt but its status says otherwise; it is never
  claimed again.
The same anomaly (kind, item, transfer) is recorded once, however many runs see it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from sorae_payouts.ledger.sql import as_utc, text


@dataclass(frozen=True)
class Anomaly:
    kind: str
    detail: str
    payout_item_id: int | None = None
    attempt_pk: int | None = None
    stripe_transfer_id: str | None = None

    def __str__(self) -> str:
        item = f" item {self.payout_item_id}" if self.payout_item_id is not None else ""
        return f"{self.kind}{item}: {self.detail}"


# Typed parameters: PostgreSQL cannot infer the type of a NULL bound in a SELECT list.
_INSERT = """
INSERT INTO execution_anomaly (batch_id, payout_item_id, attempt_pk, kind, stripe_transfer_id, detail, recorded_at)
SELECT CAST(:batch_id AS VARCHAR(64)), CAST(:payout_item_id AS BIGINT), CAST(:attempt_pk AS BIGINT),
       CAST(:kind AS VARCHAR(48)), CAST(:stripe_transfer_id AS VARCHAR(64)), CAST(:detail AS TEXT), :now
WHERE NOT EXISTS (SELECT 1 FROM execution_anomaly e WHERE e.batch_id = CAST(:batch_id AS VARCHAR(64))
                  AND e.kind = CAST(:kind AS VARCHAR(48))
                  AND COALESCE(e.payout_item_id, -1) = COALESCE(CAST(:payout_item_id AS BIGINT), -1)
                  AND COALESCE(e.stripe_transfer_id, '') = COALESCE(CAST(:stripe_transfer_id AS VARCHAR(64)), ''))
"""


def record_anomalies(engine: sa.Engine, batch_id: str, anomalies: list[Anomaly], *, now: datetime) -> None:
    if not anomalies:
        return
    with engine.begin() as conn:
        for a in anomalies:
            conn.execute(
                text(_INSERT),
                {
                    "batch_id": batch_id,
                    "payout_item_id": a.payout_item_id,
                    "attempt_pk": a.attempt_pk,
                    "kind": a.kind,
                    "stripe_transfer_id": a.stripe_transfer_id,
                    "detail": a.detail[:4000],
                    "now": now,
                },
            )


def list_anomalies(conn: sa.Connection, batch_id: str) -> list[dict]:
    rows = conn.execute(
        text(
            "SELECT anomaly_pk, payout_item_id, attempt_pk, kind, stripe_transfer_id, detail, recorded_at "
            "FROM execution_anomaly WHERE batch_id = :b ORDER BY anomaly_pk"
        ),
        {"b": batch_id},
    ).mappings()
    return [{**dict(r), "recorded_at": as_utc(r["recorded_at"]).isoformat()} for r in rows]
