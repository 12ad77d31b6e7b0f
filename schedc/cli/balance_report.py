"""`schedc balance`'s work, as plain functions: reading the loads (and the previous placement),
planning, and what the command prints and writes (the per-layer table, the placement JSON, the
picture's series). cli/balance.py parses the arguments, imports this module (and so numpy, through
schedc.experts) only when the command runs, calls `run_balance` and writes what it returns. numpy
(the `np.ndarray` of the annotations, never evaluated) is imported inside the functions that need
it, as the command line's rules ask."""

from __future__ import annotations

from dataclasses import dataclass

from ..experts.loads import read_loads, read_placement
from ..experts.planner import ExpertPlan, placement_loads, plan_experts
from ..experts.validate import fail


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
    import numpy as np

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
    import numpy as np

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


def no_redundancy_loads(weight: np.ndarray, num_gpus: int) -> np.ndarray | None:
    """GPU loads `[layers, M]` with one replica per expert in index order (experts E/M per GPU),
    the baseline users quote; None when the experts do not divide over the GPUs."""
    layers, experts = weight.shape
    if experts % num_gpus:
        return None
    return weight.reshape(layers, num_gpus, -1).sum(axis=2)


def balancedness(gpu_loads: np.ndarray, speeds: np.ndarray) -> np.ndarray:
    """Ideal time / slowest GPU's time per layer (mean / max with equal speeds)."""
    import numpy as np

    slowest = (gpu_loads / speeds).max(axis=1)
    ideal = gpu_loads.sum(axis=1) / speeds.sum()
    return np.divide(ideal, slowest, out=np.ones_like(ideal), where=slowest > 0)


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def format_report(weight: np.ndarray, plan: ExpertPlan, eplb: ExpertPlan) -> str:
    """The table: per layer and in total (mean over layers), balancedness without redundancy,
    with `eplb`, with the chosen policy, at the lower bound, the gap, and slots moved."""
    import numpy as np

    base = no_redundancy_loads(weight, plan.gpu_loads.shape[1])
    base_b = None if base is None else balancedness(base, plan.speeds)
    bound_b = np.divide(weight.sum(axis=1) / plan.speeds.sum(), plan.lower_bound,
                        out=np.ones(len(weight)), where=plan.lower_bound > 0)
    moves = plan.moves
    head = (f"{'layer':>5} {'no-redund':>9} {'eplb':>7} {plan.policy:>7} {'bound':>7} {'gap':>7} "
            f"{'max/mean':>8}" + (f" {'moved':>6}" if moves is not None else ""))
    lines = [f"{weight.shape[0]} layers x {weight.shape[1]} experts, {plan.phy2log.shape[1]} slots on "
             f"{plan.gpu_loads.shape[1]} GPUs ({_placement(plan)}); "
             "balancedness = mean GPU load / max GPU load (ideal / slowest with --speeds), 1 is perfect",
             head]
    for layer in range(weight.shape[0]):
        lines.append(_row(str(layer), None if base_b is None else base_b[layer], eplb.balancedness[layer],
                          plan.balancedness[layer], bound_b[layer], plan.gap[layer],
                          None if moves is None else int(moves[layer])))
    lines.append(_row("mean", None if base_b is None else float(base_b.mean()),
                      float(eplb.balancedness.mean()), float(plan.balancedness.mean()),
                      float(bound_b.mean()), float(plan.gap.mean()),
                      None if moves is None else int(moves.sum())))
    if moves is not None:
        lines.append(f"moved: {int(moves.sum())} of {plan.phy2log.size} slots change expert "
                     "(the 'mean' row gives the total)")
    return "\n".join(lines) + "\n"


def _placement(plan: ExpertPlan) -> str:
    if plan.hierarchical and plan.nodes > 1:
        return f"hierarchical: each expert group kept on one of {plan.nodes} nodes"
    return "global"


def _row(label, base, eplb, chosen, bound, gap, moves) -> str:
    text = (f"{label:>5} {_cell(base):>9} {_cell(eplb):>7} {_cell(chosen):>7} {_cell(bound):>7} "
            f"{gap:>7.2%} {1 / chosen if chosen else float('inf'):>8.4f}")
    return text + (f" {moves:>6}" if moves is not None else "")


def plan_to_json(plan: ExpertPlan, sizes: dict) -> dict:
    """The placement file: DeepSeek's three arrays, per-GPU loads and what they achieve."""
    import numpy as np

    out = {"version": 1, **sizes, "policy": plan.policy, "hierarchical": plan.hierarchical,
           "phy2log": plan.phy2log.tolist(), "log2phy": plan.log2phy.tolist(),
           "logcnt": plan.logcnt.tolist(), "gpu_loads": np.round(plan.gpu_loads, 6).tolist(),
           "speeds": plan.speeds.tolist(), "balancedness": np.round(plan.balancedness, 6).tolist(),
           "lower_bound": np.round(plan.lower_bound, 6).tolist()}
    if plan.moves is not None:
        out["moves"] = plan.moves.tolist()
    return out
