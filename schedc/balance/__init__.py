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
it imports neither numpy nor scipy. So that `stages = auto` works without the balance extra, the
expert balancer's names below are loaded (with numpy) on first use, not when the package is.
"""

__all__ = ["ExpertPlan", "plan_experts", "rebalance_experts"]


def __getattr__(name: str):
    if name in __all__:
        from . import plan

        return getattr(plan, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
