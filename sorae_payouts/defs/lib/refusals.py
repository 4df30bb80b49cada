"""The Dagster layer's one translation of refusals: a `PayoutRefused` from the domain fails the step as a
`dg.Failure` that is never retried (a refusal is a decision, not a glitch); anything else keeps its
traceback and the job's retry policy."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg

from sorae_payouts.core.errors import PayoutRefused


@contextmanager
def refusal_fails_the_step() -> Iterator[None]:
    try:
        yield
    except PayoutRefused as exc:
        raise dg.Failure(str(exc), allow_retries=False) from exc
