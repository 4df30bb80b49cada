"""The operator CLI, `sorae-payouts` (typer + rich). Each command group lives in its own module."""
