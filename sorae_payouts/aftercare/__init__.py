"""Operators' controls over executed batches: isolated retry, status refresh, reconciliation."""
