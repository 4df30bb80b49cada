"""Plain-Python metadata builders: money as integer minor units plus a readable rendering."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import dagster as dg

from sorae_payouts.core.money import format_minor


def table(records: Iterable[Mapping], columns: dict[str, str]) -> dg.TableMetadataValue:
    """A metadata table; `columns` maps name -> type ("string", "int"). Values become int/str."""
    rows = [dg.TableRecord({k: _plain(r.get(k)) for k in columns}) for r in records]
    schema = dg.TableSchema(columns=[dg.TableColumn(name, kind) for name, kind in columns.items()])
    return dg.MetadataValue.table(records=rows, schema=schema)


def money(amount_minor: int, currency: str) -> str:
    return format_minor(int(amount_minor), currency)


def _plain(value):
    # numpy scalars and Decimals are rejected by Dagster's metadata; None renders as empty text.
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return int(value)
    return str(value)
