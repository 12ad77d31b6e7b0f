"""Pause Python's cyclic garbage collector while a pass builds large acyclic data.

The passes allocate millions of small tuples, and each allocation burst triggers collections that
scan every live object (a torch process has many); nothing they build holds a reference cycle,
so reference counting frees it all and the collector has nothing to find. On leaving, what was
built goes to the oldest generation unscanned (it is scanned at the next full collection, as
long-lived objects are).

May import: nothing
Libraries at module level: none
"""

from __future__ import annotations

import gc
from contextlib import contextmanager


@contextmanager
def gc_paused():
    """Disable the cyclic collector inside the block (nesting-safe; restores the prior state)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            _promote_untouched()
            gc.enable()


def _promote_untouched() -> None:
    """Move what the block allocated to the oldest generation without scanning it: re-enabled,
    the collector would first walk every young object the passes made (a fifth of a large
    compile's time), to find no cycle. Skipped when the program froze objects itself
    (`gc.freeze`, e.g. before forking), since `unfreeze` would release those too."""
    if gc.get_freeze_count():
        return
    gc.freeze()
    gc.unfreeze()
