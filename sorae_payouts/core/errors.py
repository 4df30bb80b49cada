"""One root for every refusal of the engine.

A refusal is the engine declining to do something, for a reason an operator can act on: a batch that
is not approved, a month closed out of order, a key that does not resolve, a program short of funds, a
malformed period. Every such exception derives from `PayoutRefused`, so the two front doors catch it
once: the CLI prints "refused: <message>" (or `{"refused": ...}` with --json) and exits 1; the Dagster
layer turns it into a `Failure` that is never retried. Anything else is a bug and keeps its traceback.

The message shape is stable: one line saying what was refused and why, ending with the next step where
there is one. It never contains a secret (keys are named by their reference, `env:VAR`).
"""

from __future__ import annotations


class PayoutRefused(Exception):
    """The engine refuses; `str(exc)` is the one-line reason (and next step) for the operator."""


class InvalidValue(PayoutRefused, ValueError):
    """A value given by a person (a period, an amount, an option) is not what it must look like."""
