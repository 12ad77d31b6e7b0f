"""Expert placement: replicating MoE experts and placing the replicas on GPUs, EPLB-compatible.

`rebalance_experts` is DeepSeek's EPLB entry point (same arguments, same outputs) with a better
default policy; `plan_experts` returns the whole plan (`ExpertPlan`) with per-GPU loads, the lower
bound and the moves. `schedc balance` (cli/balance.py) is the command line over it, and
`schedc.balance` re-exports these three names.

- planner.py: `plan_experts`, `rebalance_experts`, `ExpertPlan`: the entry points, choosing per
  layer between DeepSeek's plan and the joint policy's.
- eplb.py: DeepSeek's EPLB, exactly, in numpy, vectorized over layers.
- joint.py: the joint policy (replica counts and placement chosen together) and its lower bounds.
- moves.py: the joint policy's moves on batches of rows: packing replicas, exchanging them.
- migrate.py: keeping experts in their slots across rebalances (`previous`, `max_moves`).
- nearby.py: few moves from the placement in use to within a tolerance of the lower bound, without
  a new plan (`previous` with `tolerance`: the live rebalancer's planner).
- validate.py: the argument checks shared by every policy (`Shape`, `fail`).
- loads.py: reading loads and placements from CSV, .npy, .json and torch .pt files.
- reference.py: a slow, loop-based torch EPLB: the test oracle and the benchmark's anchor.

May import: errors
Libraries at module level: numpy
Libraries inside functions: scipy, torch
Must not import partition/ (the stage partitioner), cli/ or backends/. Importing this package
loads numpy, so nothing below the command line imports it at module level: `schedc.balance` and
cli/balance.py load it on first use.
"""

from .planner import ExpertPlan, plan_experts, rebalance_experts

__all__ = ["ExpertPlan", "plan_experts", "rebalance_experts"]
