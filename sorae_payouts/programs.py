"""Programs: one per merchant, each with its paying Stripe account. Today there is a single program."""

DEFAULT_PROGRAM = "default"
