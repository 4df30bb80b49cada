"""Short garbage-collection pauses for processes that pace Stripe requests to the millisecond.

A full collection of CPython's cyclic garbage collector stops every thread of the process while it
walks every tracked object. In a run worker that has imported SQLAlchemy, the Stripe SDK and the
engine, that walk took 33-52 ms, about every 50 s (measured: bench/README.md, execution across
programs). Requests whose rate-limit slot fell inside the pause leave late and together, and two or
three of them then land in the same second at Stripe: the shared schedule alone cannot prevent
that, because the pause happens after it has handed out the slots.

`gc.freeze()` (CPython 3.7+) moves every object alive at that moment (what the imports built) into a
permanent generation that collections no longer walk; what the run creates afterwards is still
collected as usual. Reference counting still frees frozen objects that die; only reference cycles
among them are kept, so it is done once per process, right after a full collection, at the start of
work, never in a loop.
"""

from __future__ import annotations

import gc
import threading

_lock = threading.Lock()
_frozen = False


def freeze_startup_heap() -> bool:
    """Collect once, then freeze what is alive (once per process). True if this call froze it."""
    global _frozen
    with _lock:
        if _frozen:
            return False
        gc.collect()
        gc.freeze()
        _frozen = True
        return True
