"""Passes from a compute order to a plan: `fuse_overlap`, then `lower_comm`."""

from .fuse import fuse_overlap
from .lower import lower_comm

__all__ = ["fuse_overlap", "lower_comm"]
