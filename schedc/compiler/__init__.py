"""The compiler: one path from a checked spec to a verified plan.

    spec --build_dag--> DAG --(an order: a family's, a hand-written one, or the optimizer's)-->
         compute order --fuse_overlap--> compute lists --lower_comm--> Plan --verify_plan--> Compiled

- flow.py: `compile_spec`, the one flat function of named steps; the three sources of an order
  (a family, a hand-written order, the search) plug in where the order is made.
- choose.py: `schedule = auto` (the fastest family that fits, then the search on its placement)
  and `placement = any` (the fastest placement): compile several variants, keep the shortest.
- recompute.py: `recompute = auto` (each stage's recompute option chosen with the order, by the
  family, the search or CP-SAT) and `recompute_bound` (the lower bound with recompute counted).
- problems.py: verification problems turned into located diagnostics (a hand-written order's at
  the user's tokens; a family's memory over the limit at `limit`, with the smallest limit any plan
  can meet).

- recut.py: `with_family`, `with_placement`: a checked spec re-specified for another family or
  placement, the same model's stages re-cut (language work on a checked spec, kept here beside
  choose.py, its user; `schedc.compiler.with_family` is public).

May import: errors, ir, dag, gcpause, lang, schedules, passes, check, simulate, viz, search
Libraries at module level: none
"""

from .flow import Compiled, compile_spec
from .recut import with_family, with_placement

__all__ = ["Compiled", "compile_spec", "with_family", "with_placement"]
