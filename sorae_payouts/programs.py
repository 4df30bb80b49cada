"""Programs: one per merchant, each with its paying Stripe account (today a single default program)."""

DEFAULT_PROGRAM = "default"
