"""The checks of a plan: the proofs the compiler runs before it hands a plan out.

verify.py checks a compute order and a full plan (every op exactly once, dependencies, no deadlock
with the FIFO channel model); comm.py checks the sends and receives (pairing, channel order);
memory.py counts the activations each rank holds along its order (the memory limit).

May import the ground floor (errors, ir, dag), lang/ (PipelineSpec) and passes/ (the transfer of a
cross-rank edge). Must not import the compiler, schedules/, simulate, viz/, interop/ or cli/.

May import: errors, ir, dag, gcpause, lang, passes
Libraries at module level: none
"""

from .verify import Problem, verify_order, verify_plan

__all__ = ["Problem", "verify_order", "verify_plan"]
