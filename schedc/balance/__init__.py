"""Load balancing: experts onto GPUs (EPLB), and later layers onto stages.

`rebalance_experts` is DeepSeek's EPLB entry point (same arguments, same outputs) with a better
default policy; `plan_experts` returns the whole plan with per-GPU loads, the lower bound and the
moves. May import numpy and scipy (the `balance` extra) and the ground floor (`schedc.errors`);
torch only lazily inside functions; never `schedc.cli`.
"""

from .plan import ExpertPlan, plan_experts, rebalance_experts

__all__ = ["ExpertPlan", "plan_experts", "rebalance_experts"]
