"""The old home of the expert balancer, kept so that `from schedc.balance import plan_experts,
rebalance_experts, ExpertPlan` keeps working: those three names, re-exported from schedc.experts
on first use (so importing this package does not load numpy). New code imports schedc.experts;
the stage partitioner is schedc.partition.

May import: experts
Libraries at module level: none
"""

__all__ = ["ExpertPlan", "plan_experts", "rebalance_experts"]


def __getattr__(name: str):
    if name in __all__:
        from ..experts import planner

        return getattr(planner, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
