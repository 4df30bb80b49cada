"""Rich tables shared by several commands."""

from __future__ import annotations

from rich.table import Table

from sorae_payouts.execution.outcomes import BatchOutcome
from sorae_payouts.money import format_minor


def outcome_table(outcome: BatchOutcome) -> Table:
    """Items and amounts per currency and outcome (posted, failed, held, ..., carried_forward)."""
    table = Table("currency", "outcome", "items", "amount", title=f"{outcome.batch_id}: {outcome.status}")
    for (currency, status), (count, amount) in sorted(outcome.totals.items()):
        table.add_row(currency, status, str(count), format_minor(amount, currency))
    return table
