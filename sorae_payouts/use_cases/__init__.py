"""Use cases: what the CLI and the Dagster layer both do, written once (see docs/architecture.md)."""
