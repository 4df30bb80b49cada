"""Programs: one per merchant, each with its paying Stripe account. Only the default program exists today."""

DEFAULT_PROGRAM = "default"
