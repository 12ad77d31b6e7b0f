"""Passes from a compute order to a plan: `fuse_overlap`, then `lower_comm`.

May import the ground floor (errors, ir, dag) and lang/ (PipelineSpec). Must not import check/,
schedules/, the compiler or anything above it: a pass rewrites values and proves nothing.

May import: errors, ir, dag, gcpause, lang
Libraries at module level: none
"""

from .fuse import fuse_overlap
from .lower import lower_comm

__all__ = ["fuse_overlap", "lower_comm"]
