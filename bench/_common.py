"""Shared benchmark plumbing: scratch ledgers on each backend and a peak-RSS sampler."""

from __future__ import annotations

import os
import threading
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

import psutil
import psycopg
import sqlalchemy as sa

from sorae_payouts.ledger.database import create_ledger_engine, upgrade

PG_ADMIN_URL = os.environ.get("SORAE_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


@contextmanager
def scratch_ledger(backend: str, workdir: Path):
    """A fresh, migrated ledger (SQLite file or uniquely named PostgreSQL database), dropped after."""
    if backend == "sqlite":
        url = f"sqlite:///{workdir / f'bench_{uuid.uuid4().hex[:8]}.sqlite3'}"
        cleanup = lambda: None  # noqa: E731 - the work dir goes away with it
    else:
        name = f"sorae_bench_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        url = str(sa.engine.make_url(PG_ADMIN_URL).set(database=name))

        def cleanup():
            with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    engine = create_ledger_engine(url)
    upgrade(engine)
    try:
        yield url, engine
    finally:
        engine.dispose()
        cleanup()


class PeakRss:
    """Samples this process's resident set size every 20 ms; `peak_mb` is the maximum seen."""

    def __init__(self):
        self.process = psutil.Process()
        self.peak = self.process.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(0.02)

    def __enter__(self):
        self.peak = self.process.memory_info().rss
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.process.memory_info().rss)

    @property
    def peak_mb(self) -> float:
        return self.peak / 2**20


def row(phase: str, backend: str, seconds: float, rows: int | None, peak_mb: float, note: str = "") -> str:
    rate = f"{rows / seconds:>12,.0f}" if rows and seconds > 0 else f"{'':>12}"
    return f"| {backend:<8} | {phase:<34} | {seconds:>8.2f} | {rate} | {peak_mb:>8.0f} | {note}"


HEADER = (
    f"| {'backend':<8} | {'phase':<34} | {'wall s':>8} | {'rows/s':>12} | {'peak MB':>8} | note\n"
    f"|{'-' * 10}|{'-' * 36}|{'-' * 10}|{'-' * 14}|{'-' * 10}|------"
)
