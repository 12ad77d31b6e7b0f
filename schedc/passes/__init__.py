"""Passes from a compute order to a plan: `insert_recompute` (the R ops of stages that recompute),
`fuse_overlap`, then `lower_comm`.

May import the ground floor (errors, ir, dag) and lang/ (PipelineSpec). Must not import check/,
schedules/, the compiler or anything above it: a pass rewrites values and proves nothing.

May import: errors, ir, dag, gcpause, lang
Libraries at module level: none
"""

from .fuse import fuse_overlap
from .lower import lower_comm
from .recompute import insert_recompute

__all__ = ["fuse_overlap", "insert_recompute", "lower_comm"]
