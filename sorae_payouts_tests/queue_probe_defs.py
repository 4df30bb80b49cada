"""A trivial code location for the run-queue test: its one job waits until the test creates the
file named by SORAE_QUEUE_PROBE_RELEASE, so its runs stay in progress while the queue is ticked."""

import os
import time
from pathlib import Path

import dagster as dg


@dg.op
def wait_for_release() -> None:
    release = Path(os.environ["SORAE_QUEUE_PROBE_RELEASE"])
    deadline = time.monotonic() + 120  # never outlive a test that died before releasing
    while not release.exists() and time.monotonic() < deadline:
        time.sleep(0.1)


@dg.job(executor_def=dg.in_process_executor)
def queue_probe_job():
    wait_for_release()


defs = dg.Definitions(jobs=[queue_probe_job])
