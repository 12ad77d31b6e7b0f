"""`schedc balance`'s work, as plain functions: reading the loads (and the previous placement),
planning, and what the command prints and writes (the per-layer table, the placement JSON, the
picture's series). cli/balance.py parses the arguments, imports this module (and so numpy, through
schedc.experts) only when the command runs, calls `run_balance` and writes what it returns. numpy
(the `np.ndarray` of the annotations, never evaluated) is imported inside the functions that need
it, as the command line's rules ask."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import SchedError
from ..experts.loads import UnreadableFile, read_loads, read_placement
from ..experts.planner import ExpertPlan, placement_loads, plan_experts
from ..experts.validate import check_previous, check_shape
from .common import UsageError


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
    tolerance: float | None = None


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
            raise UsageError(f"--speeds: '{part}' is not a speed; give numbers like 1,1,0.5 or 16x1,16x0.5") from None
    if len(values) != gpus:
        raise UsageError(f"--speeds gives {len(values)} speeds, but --gpus is {gpus}: one per GPU")
    return np.array(values)


def run_balance(request: BalanceRequest) -> BalanceResult:
    """Read the loads (and previous placement), plan, and describe the plan. A file that cannot
    be read and sizes that do not fit the loads (each message names its option) are
    `UsageError`s; wrong numbers in a file stay `SchedError`s."""
    try:
        weight = read_loads(request.loads)
        previous = None if request.previous is None else read_placement(request.previous)
    except UnreadableFile as error:
        raise UsageError(error.diagnostics[0].message) from None
    speeds = parse_speeds(request.speeds, request.gpus)
    options = dict(hierarchical=request.hierarchical, speeds=speeds)
    try:
        shape = check_shape(weight, request.replicas, request.groups, request.nodes, request.gpus,
                            request.hierarchical)
    except SchedError as error:
        raise UsageError(error.diagnostics[0].message) from None
    if previous is not None:
        check_previous(previous, shape)  # the previous placement's content: a problem in the input
    try:
        plan = plan_experts(weight, request.replicas, request.groups, request.nodes, request.gpus,
                            request.policy, allow_duplicates=request.allow_duplicates,
                            previous=previous, max_moves=request.max_moves, tolerance=request.tolerance,
                            **options)
        eplb = plan if request.policy == "eplb" and previous is None else plan_experts(
            weight, request.replicas, request.groups, request.nodes, request.gpus, "eplb", **options)
    except SchedError as error:  # the files are read and checked: what is left is the options
        raise UsageError(error.diagnostics[0].message) from None
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
    time per GPU (tokens with equal speeds), before and after, and a title; the chosen plan under
    its column's name (none when it is DeepSeek's plan itself)."""
    plan, speeds = result.plan, result.plan.speeds
    chosen = chosen_name(plan, result.eplb)
    series = {result.before[0]: result.before[1] / speeds, "eplb": result.eplb.gpu_loads / speeds}
    figures = f"eplb {result.eplb.balancedness.mean():.4f}"
    if chosen:
        series[chosen] = plan.gpu_loads / speeds
        figures = f"{chosen} {plan.balancedness.mean():.4f}, {figures}"
    title = (f"tokens per GPU: {plan.phy2log.shape[1]} slots on {plan.gpu_loads.shape[1]} GPUs; "
             f"balancedness {figures}")
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


def chosen_name(plan: ExpertPlan, eplb: ExpertPlan) -> str | None:
    """The chosen plan's column name; None when it is DeepSeek's plan itself (`--policy eplb`
    without --previous), which the eplb column already shows."""
    if plan is eplb:
        return None
    return "eplb*" if plan.policy == "eplb" else plan.policy


def _figures(weight: np.ndarray, plan: ExpertPlan) -> tuple[np.ndarray | None, np.ndarray]:
    """Per layer: balancedness without redundancy (None when the experts do not divide over the
    GPUs) and at the lower bound."""
    import numpy as np

    base = no_redundancy_loads(weight, plan.gpu_loads.shape[1])
    base_b = None if base is None else balancedness(base, plan.speeds)
    bound_b = np.divide(weight.sum(axis=1) / plan.speeds.sum(), plan.lower_bound,
                        out=np.ones(len(weight)), where=plan.lower_bound > 0)
    return base_b, bound_b


def format_report(weight: np.ndarray, plan: ExpertPlan, eplb: ExpertPlan) -> str:
    """The table: per layer and in total (mean over layers), balancedness without redundancy,
    with `eplb`, with the chosen policy (one column when that is eplb), at the lower bound, the
    gap, and slots moved."""
    base_b, bound_b = _figures(weight, plan)
    moves, chosen = plan.moves, chosen_name(plan, eplb)
    names = ["no-redund", "eplb"] + ([chosen] if chosen else []) + ["bound", "gap", "max/mean"]
    head = (f"{'layer':>5} " + " ".join(f"{n:>{9 if n == 'no-redund' else 7}}" for n in names[:-1])
            + f" {'max/mean':>8}" + (f" {'moved':>6}" if moves is not None else ""))
    lines = [f"{weight.shape[0]} layers x {weight.shape[1]} experts, {plan.phy2log.shape[1]} slots on "
             f"{plan.gpu_loads.shape[1]} GPUs ({_placement(plan)}); "
             "balancedness = mean GPU load / max GPU load (ideal / slowest with --speeds), 1 is perfect",
             head]
    for layer in range(weight.shape[0]):
        lines.append(_row(str(layer), None if base_b is None else base_b[layer], eplb.balancedness[layer],
                          plan.balancedness[layer] if chosen else None, plan.balancedness[layer],
                          bound_b[layer], plan.gap[layer], None if moves is None else int(moves[layer])))
    lines.append(_row("mean", None if base_b is None else float(base_b.mean()),
                      float(eplb.balancedness.mean()), float(plan.balancedness.mean()) if chosen else None,
                      float(plan.balancedness.mean()), float(bound_b.mean()), float(plan.gap.mean()),
                      None if moves is None else int(moves.sum())))
    if chosen == "eplb*":
        lines.append("eplb*: DeepSeek's plan keeping the previous placement's experts in their slots "
                     "where it can (--previous); eplb: DeepSeek's plan from scratch")
    if moves is not None:
        lines.append(f"moved: {int(moves.sum())} of {plan.phy2log.size} slots change expert "
                     "(the 'mean' row gives the total)")
    return "\n".join(lines) + "\n"


def report_json(result: BalanceResult) -> dict:
    """`balance --json`: the table's figures per layer (and their means), the chosen plan's name,
    and the placement file's content."""
    weight, plan, eplb = result.weight, result.plan, result.eplb
    base_b, bound_b = _figures(weight, plan)
    per_layer = {"no_redundancy": None if base_b is None else base_b.tolist(),
                 "eplb": eplb.balancedness.tolist(), "chosen": plan.balancedness.tolist(),
                 "bound": bound_b.tolist()}
    means = {key: None if values is None else sum(values) / len(values) for key, values in per_layer.items()}
    return {"layers": int(weight.shape[0]), "experts": int(weight.shape[1]), "policy": plan.policy,
            "balancedness": per_layer, "mean_balancedness": means, "gap": plan.gap.tolist(),
            "moves": None if plan.moves is None else plan.moves.tolist(), "placement": result.placement}


def _placement(plan: ExpertPlan) -> str:
    if plan.hierarchical and plan.nodes > 1:
        return f"hierarchical: each expert group kept on one of {plan.nodes} nodes"
    return "global"


def _row(label, base, eplb, shown, chosen, bound, gap, moves) -> str:
    """One line of the table; `shown` is the chosen plan's column (None: no such column), `chosen`
    its balancedness for max/mean."""
    cells = [f"{_cell(base):>9}", f"{_cell(eplb):>7}"] + ([f"{_cell(shown):>7}"] if shown is not None else [])
    text = (f"{label:>5} {' '.join(cells)} {_cell(bound):>7} {gap:>7.2%} "
            f"{1 / chosen if chosen else float('inf'):>8.4f}")
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
