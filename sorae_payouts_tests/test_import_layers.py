"""The house's import rules (pyproject.toml, [tool.importlinter]): layers from the CLI down to `core`,
no Dagster in the domain, a sandbox that imports nothing of the engine, no circle inside any package.

The first test holds the code to them; the others prove the rules would catch a break, on a copy of the
package with one bad import added (an upward import, a circle, Dagster in the domain).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def _lint(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(root / "pyproject.toml"), "--no-cache"],
        cwd=root,
        env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_house_keeps_its_import_contracts():
    result = _lint(REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.fixture
def copy_of_the_house(tmp_path: Path) -> Path:
    for package in ("sorae_payouts", "sorae_sandbox"):
        shutil.copytree(REPO / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


@pytest.mark.parametrize(
    ("module", "bad_import", "broken"),
    [
        ("sorae_payouts/core/money.py", "import sorae_payouts.execution.pay_batch", "Layers"),
        ("sorae_payouts/ingest/model.py", "import sorae_payouts.ingest.staging", "No import circle"),
        ("sorae_payouts/month_end/finalize.py", "import dagster", "never imports Dagster"),
        ("sorae_sandbox/store.py", "import sorae_payouts.core.money", "imports nothing of the engine"),
    ],
    ids=["upward", "circle", "dagster-in-domain", "sandbox-imports-engine"],
)
def test_a_bad_import_breaks_a_contract(copy_of_the_house: Path, module: str, bad_import: str, broken: str):
    path = copy_of_the_house / module
    path.write_text(path.read_text() + f"\n{bad_import}  # the break under test\n")
    result = _lint(copy_of_the_house)
    assert result.returncode == 1, result.stdout + result.stderr
    assert any(broken in line and "BROKEN" in line for line in result.stdout.splitlines()), result.stdout
