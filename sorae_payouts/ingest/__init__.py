"""Importing affiliates, commissions and order events from CSV or Parquet files into the ledger.

Business rules (this is where money enters the system, so nothing is guessed and nothing is lost):
- A file is imported in ONE transaction: all its valid rows load, or none do.
- Each invalid row is rejected with its data row number (1-based, header excluded), the column at
  fault and the reason, in the report and in `<input stem>.rejects.csv` next to the file; the valid
  rows of the same file still load.
- Re-importing a file is a no-op: records are identified by their id (affiliate_id, commission_id,
  event_id) and identical ones count as `already_present`. Identical copies of a row inside one file
  load once; the same id with different content inside one file rejects all its rows.
- Commissions and order events are immutable facts: different content under a known id is rejected.
  Affiliates are master data: different content under a known id UPDATES the affiliate (see
  `sorae_payouts.ingest.affiliates`).
- Money is parsed exactly (never through floats) in the currency's Stripe exponent.
- A file that cannot be read at all (not CSV/Parquet, wrong columns, broken encoding) raises
  `UnreadableFileError` and loads nothing.
"""

from sorae_payouts.ingest.importer import import_file
from sorae_payouts.ingest.model import (
    ImportAbortedError,
    ImportKind,
    ImportReport,
    RejectedRow,
    UnreadableFileError,
)
from sorae_payouts.ingest.reader import estimate_rows
from sorae_payouts.ingest.rejects import rejects_path

__all__ = [
    "ImportAbortedError",
    "ImportKind",
    "ImportReport",
    "RejectedRow",
    "UnreadableFileError",
    "estimate_rows",
    "import_file",
    "rejects_path",
]
