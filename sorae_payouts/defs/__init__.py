"""The Dagster layer: thin assets, checks, jobs and schedules over the plain-Python domain."""

import os
import warnings

if os.environ.get("SORAE_QUIET_DAGSTER_WARNINGS") == "1":
    # Set by the `sorae-payouts` entry point for itself and the code servers / run workers it starts:
    # the beta/preview APIs we use are chosen knowingly (docs/architecture.md), so their warnings are
    # noise in an operator's terminal. Tests and `dagster dev` keep them.
    import dagster as dg

    warnings.filterwarnings("ignore", category=dg.BetaWarning)
    warnings.filterwarnings("ignore", category=dg.PreviewWarning)
