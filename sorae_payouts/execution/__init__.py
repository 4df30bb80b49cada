"""Paying an approved batch: one Stripe transfer per payable item, exactly once.

`attempts` holds the ledger side (claim, record outcome), `executor` the run (pre-flight, worker pool,
resolution of unknown outcomes), `outcomes` the per-item view operators and affiliates see.
"""
