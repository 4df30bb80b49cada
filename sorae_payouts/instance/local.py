"""A local Dagster home for the CLI's runs, shared with `dagster dev`, so the UI shows them."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import dagster as dg

REPO_INSTANCE_FILE = Path(__file__).resolve().parents[2] / "deploy" / "local" / "dagster.yaml"


def local_instance(data_dir: Path) -> dg.DagsterInstance:
    """The instance at DAGSTER_HOME, or at `data_dir/dagster_home` (created with the repository's
    safe dagster.yaml) when DAGSTER_HOME is unset."""
    if not os.environ.get("DAGSTER_HOME"):
        home = data_dir / "dagster_home"
        home.mkdir(parents=True, exist_ok=True)
        if REPO_INSTANCE_FILE.exists() and not (home / "dagster.yaml").exists():
            shutil.copy(REPO_INSTANCE_FILE, home / "dagster.yaml")
        os.environ["DAGSTER_HOME"] = str(home)
    return dg.DagsterInstance.get()
