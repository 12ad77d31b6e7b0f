"""What `schedc balance` prints and writes: the per-layer table and the placement JSON."""

from __future__ import annotations

import numpy as np

from .plan import ExpertPlan


def no_redundancy_loads(weight: np.ndarray, num_gpus: int) -> np.ndarray | None:
    """GPU loads `[layers, M]` with one replica per expert in index order (experts E/M per GPU),
    the baseline users quote; None when the experts do not divide over the GPUs."""
    layers, experts = weight.shape
    if experts % num_gpus:
        return None
    return weight.reshape(layers, num_gpus, -1).sum(axis=2)


def balancedness(gpu_loads: np.ndarray, speeds: np.ndarray) -> np.ndarray:
    """Ideal time / slowest GPU's time per layer (mean / max with equal speeds)."""
    slowest = (gpu_loads / speeds).max(axis=1)
    ideal = gpu_loads.sum(axis=1) / speeds.sum()
    return np.divide(ideal, slowest, out=np.ones_like(ideal), where=slowest > 0)


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def format_report(weight: np.ndarray, plan: ExpertPlan, eplb: ExpertPlan) -> str:
    """The table: per layer and in total (mean over layers), balancedness without redundancy,
    with `eplb`, with the chosen policy, at the lower bound, the gap, and slots moved."""
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
    out = {"version": 1, **sizes, "policy": plan.policy, "hierarchical": plan.hierarchical,
           "phy2log": plan.phy2log.tolist(), "log2phy": plan.log2phy.tolist(),
           "logcnt": plan.logcnt.tolist(), "gpu_loads": np.round(plan.gpu_loads, 6).tolist(),
           "speeds": plan.speeds.tolist(), "balancedness": np.round(plan.balancedness, 6).tolist(),
           "lower_bound": np.round(plan.lower_bound, 6).tolist()}
    if plan.moves is not None:
        out["moves"] = plan.moves.tolist()
    return out
