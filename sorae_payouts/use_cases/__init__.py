"""Use cases: what the CLI and the Dagster layer both do, written once.

Each function takes the ledger's engine, the run's `ProgramGateways` ("the program, then its gateway",
`registry/paying_accounts.py`) where Stripe is involved, and the program-months to act on. Neither front
door re-implements admission, month order or gateway building; they only present what comes back. Every
refusal is a `core.errors.PayoutRefused`.

- `month_end.admit_month_end` (month-end step; `sorae-payouts month-end`): raises nothing; unknown
  programs and months out of order come back as refusals per program-month, disabled programs as skipped.
- `payouts.pay_program_month` (execution step): `ExecutionRefused` (not approved, changed manifest, funds,
  disabled program, live key), `PayingAccountError`, `GatewayConfigurationError`.
- `payouts.plan_retry_of` / `payouts.send_retry` (`sorae-payouts retry`; `retry_items_job`): `BatchError`
  (no batch), `ExecutionRefused`, `PayingAccountError`.
- `aftercare.refresh_programs` (`sorae-payouts refresh`; `payout_refresh_job`): raises nothing; each
  program-month's refusal comes back with its reason, the others go on.
- `aftercare.recover` (`sorae-payouts reversals recover`; recovery job; execution step): `BatchError`,
  `PayingAccountError`, `LivePayoutsRefused`.
- `aftercare.reconcile` (`sorae-payouts reconcile`; `transfers_reconciled` check): `BatchError`,
  `PayingAccountError`.
"""
