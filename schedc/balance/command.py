"""`schedc balance` as plain functions: the CLI module only parses arguments, calls `run_balance`
and writes what it returns."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .loads import read_loads, read_placement
from .plan import ExpertPlan, placement_loads, plan_experts
from .report import format_report, no_redundancy_loads, plan_to_json
from .validate import fail


@dataclass(frozen=True)
class BalanceRequest:
    """What the command line asked for."""

    loads: str
    replicas: int
    gpus: int
    nodes: int = 1
    groups: int = 1
    policy: str = "best"
    hierarchical: bool | None = None
    allow_duplicates: bool = False
    previous: str | None = None
    max_moves: int | None = None
    speeds: str | None = None


@dataclass(frozen=True)
class BalanceResult:
    """The plan, DeepSeek's plan for comparison, the report text and the placement JSON."""

    weight: np.ndarray
    plan: ExpertPlan
    eplb: ExpertPlan
    report: str
    placement: dict
    before: tuple[str, np.ndarray]


def parse_speeds(text: str | None, gpus: int) -> np.ndarray | None:
    """`--speeds`: comma-separated relative speeds, one per GPU; `COUNTxVALUE` repeats a value
    (`16x1,16x0.5`)."""
    if text is None:
        return None
    values = []
    for part in (p.strip() for p in text.split(",")):
        count, _, value = part.rpartition("x") if "x" in part else ("1", "", part)
        try:
            values += [float(value)] * int(count)
        except ValueError:
            raise fail(f"--speeds: '{part}' is not a speed; give numbers like 1,1,0.5 or 16x1,16x0.5") from None
    if len(values) != gpus:
        raise fail(f"--speeds gives {len(values)} speeds, but --gpus is {gpus}: one per GPU")
    return np.array(values)


def run_balance(request: BalanceRequest) -> BalanceResult:
    """Read the loads (and previous placement), plan, and describe the plan."""
    weight = read_loads(request.loads)
    previous = None if request.previous is None else read_placement(request.previous)
    speeds = parse_speeds(request.speeds, request.gpus)
    options = dict(hierarchical=request.hierarchical, speeds=speeds)
    plan = plan_experts(weight, request.replicas, request.groups, request.nodes, request.gpus,
                        request.policy, allow_duplicates=request.allow_duplicates,
                        previous=previous, max_moves=request.max_moves, **options)
    eplb = plan if request.policy == "eplb" and previous is None else plan_experts(
        weight, request.replicas, request.groups, request.nodes, request.gpus, "eplb", **options)
    sizes = {"num_replicas": request.replicas, "num_groups": request.groups,
             "num_nodes": request.nodes, "num_gpus": request.gpus}
    return BalanceResult(weight, plan, eplb, format_report(weight, plan, eplb),
                         plan_to_json(plan, sizes), _before(weight, previous, request.gpus, eplb))


def _before(weight, previous, gpus, eplb) -> tuple[str, np.ndarray]:
    """What the picture compares against: the previous placement under the new loads, else one
    replica per expert in index order, else DeepSeek's plan."""
    if previous is not None:
        return "previous placement", placement_loads(weight, previous.astype(np.int64), gpus)
    base = no_redundancy_loads(weight, gpus)
    return ("no redundancy", base) if base is not None else ("eplb", eplb.gpu_loads)


def picture_series(result: BalanceResult) -> tuple[dict, str]:
    """What to draw (`schedc.viz.experts.render_expert_loads_svg`): name -> `[layers, gpus]`
    time per GPU (tokens with equal speeds), before and after, and a title."""
    plan, speeds = result.plan, result.plan.speeds
    series = {result.before[0]: result.before[1] / speeds, "eplb": result.eplb.gpu_loads / speeds}
    series[plan.policy] = plan.gpu_loads / speeds  # with --policy eplb, the plan as migrated
    title = (f"tokens per GPU: {plan.phy2log.shape[1]} slots on {plan.gpu_loads.shape[1]} GPUs; "
             f"balancedness {plan.policy} {plan.balancedness.mean():.4f}, eplb "
             f"{result.eplb.balancedness.mean():.4f}")
    return {name: values.tolist() for name, values in series.items()}, title
