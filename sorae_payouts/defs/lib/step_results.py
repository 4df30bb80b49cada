"""What one step did for each of its partitions (program-months), turned into Dagster events.

A step over many programs never stops at the first program that fails: it records, per partition,
the assets it materialized (with that partition's metadata), the check results, and the failures,
then emits them, then fails the step only at the end, naming every failed partition. Verified on
Dagster 1.13.27 (docs/architecture.md, "Programs in Dagster"):
- materializations are per partition and only for partitions that succeeded. One partition that
  succeeded: `MaterializeResult` (its outputs, so later steps of the same run go on). Otherwise
  `AssetMaterialization(partition=...)` events: an asset's returned output would materialize EVERY
  partition of a range, failed ones included, and `add_asset_metadata(partition_key=...)` lists the
  whole range on each call (quadratic at 1,000 programs);
- check results are per partition (`AssetCheckEvaluation(partition=...)`); a returned check result in
  a range run has no partition. A failed blocking check with ERROR severity makes Dagster fail the step
  after every event has been emitted, so it never hides the other programs' results.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import dagster as dg

from sorae_payouts.defs.lib import metadata as md
from sorae_payouts.defs.lib.partitions import ProgramMonth
from sorae_payouts.month_end.audit import AuditResult


def check_metadata(result: AuditResult, seconds: float, *, rows: bool = True) -> dict:
    """Summary and time; the rows (per currency, or the offending ones) unless `rows` is False."""
    columns = {
        k: ("int" if isinstance(v, int) else "string") for k, v in (result.rows[0].items() if result.rows else [])
    }
    meta = {"summary": result.summary, "seconds": round(seconds, 3)}
    if result.rows and rows:
        meta["rows"] = md.table(result.rows, columns)
    return meta


@dataclass
class StepResults:
    """Per-partition outcomes of one step; `partitions` is what the run asked for, oldest month first."""

    partitions: Sequence[ProgramMonth]
    materialized: dict[dg.AssetKey, dict[ProgramMonth, dict]] = field(default_factory=dict)
    checks: list[tuple[dg.AssetCheckKey, ProgramMonth, AuditResult, float, bool]] = field(default_factory=list)
    failed: dict[ProgramMonth, str] = field(default_factory=dict)
    skipped: dict[ProgramMonth, str] = field(default_factory=dict)
    retriable: bool = False  # a failure may be transient (not a refusal): the retry policy may re-run

    @property
    def single(self) -> bool:
        return len(self.partitions) == 1

    def fail(self, pm: ProgramMonth, reason: str, *, retriable: bool = False) -> None:
        self.failed[pm] = reason
        self.retriable = self.retriable or retriable

    def skip(self, pm: ProgramMonth, reason: str) -> None:
        self.skipped[pm] = reason

    def materialize(self, asset_key: dg.AssetKey, pm: ProgramMonth, metadata: dict) -> None:
        self.materialized.setdefault(asset_key, {})[pm] = metadata

    def check(
        self, check_key: dg.AssetCheckKey, pm: ProgramMonth, result: AuditResult, seconds: float, blocking: bool
    ) -> None:
        self.checks.append((check_key, pm, result, seconds, blocking))

    def events(self, asset_order: Sequence[dg.AssetKey]) -> Iterator:
        """Materializations (assets in dependency order), then check results."""
        as_outputs = self.single and not self.failed
        for asset_key in asset_order:
            for pm, meta in self.materialized.get(asset_key, {}).items():
                yield (
                    dg.MaterializeResult(asset_key=asset_key, metadata=meta)
                    if as_outputs
                    else dg.AssetMaterialization(asset_key=asset_key, partition=str(pm.key), metadata=meta)
                )
        for check_key, pm, result, seconds, blocking in self.checks:
            # Over many partitions, a passing check keeps its summary only (thousands of evaluations).
            meta = check_metadata(result, seconds, rows=self.single or not result.passed)
            if as_outputs:
                yield dg.AssetCheckResult(
                    asset_key=check_key.asset_key,
                    check_name=check_key.name,
                    passed=result.passed,
                    metadata=meta,
                    severity=dg.AssetCheckSeverity.ERROR,
                )
            else:
                yield dg.AssetCheckEvaluation(
                    asset_key=check_key.asset_key,
                    check_name=check_key.name,
                    passed=result.passed,
                    metadata=meta,
                    partition=str(pm.key),
                    severity=dg.AssetCheckSeverity.ERROR,
                    blocking=blocking,
                )

    def failure(self) -> dg.Failure | None:
        """The step's failure naming every failed partition, or None. Refusals are not retried."""
        if not self.failed:
            return None
        done = sum(len(v) for v in self.materialized.values())
        lines = [f"{pm}: {why}" for pm, why in sorted(self.failed.items())]
        head = (
            f"{lines[0]}"
            if self.single
            else f"{len(self.failed)} of {len(self.partitions)} program-months failed "
            f"({done} materializations recorded for the others):\n" + "\n".join(lines)
        )
        return dg.Failure(head, allow_retries=self.retriable)


class Stopwatch:
    """Seconds spent in the ledger per set call, for metadata and logs."""

    def __init__(self):
        self.started = time.perf_counter()

    def lap(self) -> float:
        now = time.perf_counter()
        seconds, self.started = now - self.started, now
        return round(seconds, 3)
