"""Balancers: deciding what runs where before scheduling (MoE experts onto GPUs; layers onto
pipeline stages).

`rebalance_experts` is DeepSeek's EPLB entry point (same arguments, same outputs) with a better
default policy; `plan_experts` returns the whole plan with per-GPU loads, the lower bound and the
moves.

May import numpy and scipy (the `balance` extra), the ground floor (errors, ir, dag), lang/,
schedules/, passes/, check/, simulate, the compiler and search/. Must not import cli/ or backends/,
nor torch at module level (a torch tensor given to `rebalance_experts` is handled lazily).

The stage partitioner is `partition_*.py` (problem, exact min-max DP, simulated search, anchors,
writers, report, `stages = auto`) with `layers_json.py` reading a profiler's layer description;
it imports neither numpy nor scipy, so importing one of those modules costs only this package's
`__init__` (which loads the expert balancer, and numpy with it).
"""

from .plan import ExpertPlan, plan_experts, rebalance_experts

__all__ = ["ExpertPlan", "plan_experts", "rebalance_experts"]
