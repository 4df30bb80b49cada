"""Sorae's payout engine: affiliate commissions -> monthly payout manifests -> Stripe Connect transfers.

The domain (ledger, money, ingest, finalize, manifest, Stripe gateway, sandbox) is plain Python and does
not import Dagster; the Dagster layer (`sorae_payouts.defs`, assembled in `sorae_payouts.definitions`)
is thin and calls into it.
"""
