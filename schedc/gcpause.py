"""Pause Python's cyclic garbage collector while a pass builds large acyclic data.

The passes allocate millions of small tuples, and each allocation burst triggers collections that
scan every live object (a torch process has many); nothing they build holds a reference cycle,
so reference counting frees it all and the collector has nothing to find.

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
            gc.enable()
