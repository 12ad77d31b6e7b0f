"""The planner's entry points: `plan_experts` (the whole plan, with loads, bound and moves) and
`rebalance_experts` (DeepSeek's signature and outputs)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import cached_property

import numpy as np

from .eplb import build_log2phy, rebalance_eplb, replica_ranks
from .joint import largest_replica, lower_bound, node_floor, pairing_bound, solve_rows
from .moves import counts_of, improve_by_swaps, pack_replicas, separate_duplicates
from .validate import (Shape, check_no_duplicates, check_previous, check_shape, check_speeds,
                       check_weight, fail)

POLICIES = ("best", "eplb")


@dataclass(frozen=True)
class ExpertPlan:
    """A placement of replicated experts on GPUs, and what it achieves.

    `phy2log [layers, R]`: the expert in each slot (GPU g holds slots `[g*R/M, (g+1)*R/M)`);
    `log2phy [layers, E, X]`: the slots of each expert's replicas, -1 padded; `logcnt [layers, E]`;
    `gpu_loads [layers, M]`: tokens per GPU, each replica carrying an equal share of its expert;
    `moves [layers]`: slots whose expert differs from `previous` (None without one); `nodes`:
    the nodes whose groups stay apart when `hierarchical`; `lower_bound`, `balancedness`, `gap`
    and `max_time` per layer are computed from these."""

    phy2log: np.ndarray
    log2phy: np.ndarray
    logcnt: np.ndarray
    gpu_loads: np.ndarray
    speeds: np.ndarray
    policy: str
    hierarchical: bool
    moves: np.ndarray | None = None
    nodes: int = 1
    problem: tuple = field(default=(), repr=False)  # (weight, shape, distinct), for the bound

    @cached_property
    def lower_bound(self) -> np.ndarray:
        """`[layers]`: no placement makes the slowest GPU's time smaller (computed on first use)."""
        weight, shape, distinct = self.problem
        return _layer_bound(weight, shape, self.speeds, distinct, self.max_time)

    @property
    def max_time(self) -> np.ndarray:
        """The slowest GPU's time per layer, `[layers]`: max over GPUs of load / speed."""
        return (self.gpu_loads / self.speeds).max(axis=1)

    @property
    def balancedness(self) -> np.ndarray:
        """Ideal time (all tokens over all speed) / the slowest GPU's time, `[layers]`; with equal
        speeds this is mean GPU load / max GPU load, 1.0 when perfect."""
        ideal = self.gpu_loads.sum(axis=1) / self.speeds.sum()
        return np.divide(ideal, self.max_time, out=np.ones_like(ideal), where=self.max_time > 0)

    @property
    def gap(self) -> np.ndarray:
        """How far above the lower bound each layer is: max_time / lower_bound - 1."""
        return np.divide(self.max_time, self.lower_bound, out=np.ones_like(self.max_time),
                         where=self.lower_bound > 0) - 1


def placement_loads(weight: np.ndarray, phy2log: np.ndarray, num_gpus: int) -> np.ndarray:
    """Tokens per GPU `[layers, M]` of `phy2log [layers, R]` under `weight [layers, E]`."""
    layers, replicas = phy2log.shape
    counts = counts_of(phy2log[:, :, None], weight.shape[1])
    share = weight / np.maximum(counts, 1)
    return np.take_along_axis(share, phy2log, axis=1).reshape(layers, num_gpus, -1).sum(axis=2)


def has_duplicates(phy2log: np.ndarray, num_gpus: int) -> np.ndarray:
    """`[layers]`: whether some GPU holds two replicas of one expert."""
    layers, replicas = phy2log.shape
    per_gpu = np.sort(phy2log.reshape(layers, num_gpus, -1), axis=2)
    return (per_gpu[:, :, 1:] == per_gpu[:, :, :-1]).any(axis=(1, 2))


def _replica_cap(shape: Shape, distinct: bool) -> int:
    per_domain = shape.gpus // shape.domains
    return per_domain if distinct else shape.replicas // shape.domains


def _group_nodes(weight: np.ndarray, shape: Shape, speeds: np.ndarray) -> np.ndarray:
    """Whole groups onto nodes, balancing node tokens over node speed: `[layers, nodes, E/N]`
    expert ids per node."""
    layers, experts = weight.shape
    size = experts // shape.groups
    if shape.nodes == 1:
        return np.broadcast_to(np.arange(experts), (layers, 1, experts)).copy()
    group_load = weight.reshape(layers, shape.groups, size).sum(axis=2)
    node_speed = np.broadcast_to(speeds.reshape(shape.nodes, -1).sum(axis=1), (layers, shape.nodes))
    ones = np.ones_like(group_load, dtype=np.int64)
    per_node = shape.groups // shape.nodes
    groups = pack_replicas(group_load, ones, node_speed, per_node, True)
    groups = improve_by_swaps(group_load, groups, node_speed, True)
    return (groups[..., None] * size + np.arange(size)).reshape(layers, shape.nodes, -1)


def best_placement(weight: np.ndarray, shape: Shape, speeds: np.ndarray, distinct: bool) -> np.ndarray:
    """The joint policy's `phy2log [layers, R]`: groups onto nodes (when hierarchical), then
    each (layer, node) solved as one row by `joint.solve_rows`."""
    layers = shape.layers
    nodes = shape.domains
    node_experts = _group_nodes(weight, shape, speeds).reshape(layers * nodes, -1)
    rows = np.take_along_axis(np.repeat(weight, nodes, axis=0), node_experts, axis=1)
    row_speeds = np.tile(speeds.reshape(nodes, -1), (layers, 1))
    cap = _replica_cap(shape, distinct)
    bound = lower_bound(rows, shape.replicas // nodes, row_speeds, cap)
    # a layer is as slow as its slowest node: no node needs to go below the others' bounds
    bound = np.repeat(bound.reshape(layers, nodes).max(axis=1), nodes)
    slots = solve_rows(rows, row_speeds, shape.slots_per_gpu, cap, distinct, bound)
    phy = np.take_along_axis(node_experts, slots.reshape(layers * nodes, -1), axis=1)
    return phy.reshape(layers, shape.replicas)


def _layer_bound(weight: np.ndarray, shape: Shape, speeds: np.ndarray, distinct: bool,
                 upper: np.ndarray) -> np.ndarray:
    """The global bound (`joint.lower_bound`), the slots-per-GPU bound (`joint.pairing_bound`,
    below `upper`, the plan's own time) and, when hierarchical, the best split of whole groups
    onto nodes (`joint.node_floor`) where the splits can be enumerated."""
    cap = shape.gpus if distinct else shape.replicas - shape.experts + 1
    bound = lower_bound(weight, shape.replicas, np.broadcast_to(speeds, (shape.layers, shape.gpus)), cap)
    fastest = speeds.max()
    low = largest_replica(weight, shape.replicas)
    pairs = pairing_bound(weight, shape.replicas, shape.slots_per_gpu, low,
                          np.maximum(upper * fastest, low)) / fastest
    bound = np.maximum(bound, np.minimum(pairs, upper))
    if not shape.hierarchical or shape.nodes == 1:
        return bound
    groups = weight.reshape(shape.layers, shape.groups, -1).sum(axis=2)
    floor = node_floor(groups, speeds.reshape(shape.nodes, -1).sum(axis=1))
    return bound if floor is None else np.maximum(bound, floor)


def plan_experts(weight, num_replicas, num_groups, num_nodes, num_gpus, policy="best", *,
                 hierarchical=None, allow_duplicates=False, speeds=None, previous=None,
                 max_moves=None, tolerance=None) -> ExpertPlan:
    """Replicate and place experts. `weight: [layers, E]` tokens per expert (a 1-D array is one
    layer); R = `num_replicas` slots per layer, a multiple of M = `num_gpus`; `policy`: "eplb"
    (DeepSeek's plan, exactly) or "best" (joint search, never worse than "eplb"); `hierarchical`:
    keep each expert group on one node (None: DeepSeek's rule, when groups divide over nodes);
    `allow_duplicates`: let "best" put two replicas of one expert on a GPU; `speeds: [M]` relative
    GPU speeds; `previous: [layers, R]` the phy2log in place now, to keep as many slots as possible
    (`max_moves`: at most this many changed slots per layer; `tolerance`: instead of a new plan,
    few changes from `previous`, found greedily, that bring the slowest GPU within 1 + tolerance
    of a lower bound (so of any plan), without computing a new plan; in a layer where the greedy
    cannot reach that, within 1 + tolerance of the new plan's time when that changes fewer slots
    than the new plan). Raises `SchedError` on bad input."""
    weight = check_weight(weight)
    if policy not in POLICIES:
        raise fail(f"policy must be one of {', '.join(POLICIES)}, got {policy!r}")
    shape = check_shape(weight, num_replicas, num_groups, num_nodes, num_gpus, hierarchical)
    speeds = check_speeds(speeds, shape.gpus)
    old = None if previous is None else check_previous(previous, shape)
    if max_moves is not None and (isinstance(max_moves, bool) or not isinstance(max_moves, (int, np.integer))
                                  or max_moves < 0):
        raise fail(f"max_moves must be an integer >= 0, got {max_moves!r}")
    if max_moves is not None and old is None:
        raise fail("max_moves needs the previous placement (previous=..., CLI: --previous FILE)")
    if tolerance is not None and (old is None or not 0 <= tolerance < float("inf")):
        raise fail(f"tolerance must be a number >= 0 and needs the previous placement, got {tolerance!r}")
    distinct = policy == "best" and not allow_duplicates
    if distinct:
        check_no_duplicates(shape)
    phy2log, log2phy, logcnt, moves = _plan(weight, shape, speeds, old, policy, distinct, max_moves, tolerance,
                                            (num_replicas, num_groups, num_nodes, num_gpus, hierarchical))
    return ExpertPlan(phy2log, log2phy, logcnt, placement_loads(weight, phy2log, shape.gpus), speeds,
                      policy, shape.hierarchical, moves, shape.nodes, (weight, shape, distinct))


def _plan(weight, shape: Shape, speeds, old, policy: str, distinct: bool, max_moves, tolerance, sizes,
          from_bound: bool = True):
    """`(phy2log, log2phy, logcnt, moves)` for checked arguments. With `tolerance` (and no
    `max_moves`, one domain, policy "best"), first without a fresh plan (`_near_previous`)."""
    if from_bound and old is not None and tolerance is not None and max_moves is None and policy == "best" \
            and shape.domains == 1:
        phy2log = _near_previous(weight, old, shape, speeds, distinct, tolerance, sizes)
        logcnt = counts_of(phy2log[:, :, None], shape.experts)
        return phy2log, build_log2phy(phy2log, replica_ranks(phy2log), logcnt), logcnt, (phy2log != old).sum(axis=1)
    replicas, groups, nodes, gpus, hierarchical = sizes
    eplb_shape = check_shape(weight, replicas, groups, nodes, gpus, hierarchical if policy == "eplb" else None)
    phy2log, log2phy, logcnt = rebalance_eplb(weight, eplb_shape.replicas, eplb_shape.groups,
                                              eplb_shape.nodes, eplb_shape.gpus, eplb_shape.hierarchical,
                                              with_log2phy=policy == "eplb" and old is None)
    if policy == "best":
        phy2log = _keep_better(weight, best_placement(weight, shape, speeds, distinct), phy2log,
                               shape, speeds, distinct)
    moves = None
    if old is not None:
        from .migrate import migrate
        phy2log, moves = migrate(weight, phy2log, old, shape, speeds, distinct, max_moves, tolerance)
    if policy != "eplb" or old is not None:
        logcnt = counts_of(phy2log[:, :, None], shape.experts)
        log2phy = build_log2phy(phy2log, replica_ranks(phy2log), logcnt)
    return phy2log, log2phy, logcnt, moves


def _near_previous(weight, old, shape: Shape, speeds, distinct: bool, tolerance: float, sizes) -> np.ndarray:
    """The tolerance path without a fresh plan where it can: `nearby.stay_near` from `old` to
    1 + tolerance times each layer's lower bound (`joint.lower_bound`: so within the tolerance of
    any plan); the layers it leaves above that get the fresh plan's way (its time times
    1 + tolerance, greedily from `old`, or the fresh plan relabelled)."""
    from .migrate import placement_time
    from .nearby import stay_near

    target = weight.sum(axis=1) / speeds.sum() * (1 + tolerance)  # the mean bound: enough where `old` meets it
    above = placement_time(weight, old, shape, speeds) > target
    if not above.any():
        return old.copy()
    cap = shape.gpus if distinct else shape.replicas - shape.experts + 1
    speeds_above = np.broadcast_to(speeds, (int(above.sum()), shape.gpus))
    target[above] = lower_bound(weight[above], shape.replicas, speeds_above, cap) * (1 + tolerance)
    near, reached = stay_near(weight, old, target, speeds, shape.gpus, distinct)
    if not reached.all():
        rest = ~reached
        near[rest] = _plan(weight[rest], replace(shape, layers=int(rest.sum())), speeds, old[rest], "best",
                           distinct, None, tolerance, sizes, from_bound=False)[0]
    return near


def _keep_better(weight, best, eplb, shape: Shape, speeds, distinct) -> np.ndarray:
    """Per layer, DeepSeek's plan where it is admissible and strictly faster than the search's;
    where it is faster but doubles an expert on a GPU that must not, the plan repaired
    (`_undouble`) when that is still faster."""
    time_best = (placement_loads(weight, best, shape.gpus) / speeds).max(axis=1)
    time_eplb = (placement_loads(weight, eplb, shape.gpus) / speeds).max(axis=1)
    take = time_eplb < time_best
    out = best.copy()
    if distinct:
        doubled = has_duplicates(eplb, shape.gpus)
        for layer in np.flatnonzero(take & doubled):
            repaired = _undouble(weight[layer], eplb[layer], shape, speeds)
            if repaired is not None and _time(weight[layer], repaired, shape, speeds) < time_best[layer]:
                out[layer] = repaired
        take &= ~doubled
    out[take] = eplb[take]
    return out


def _time(weight_row, phy, shape: Shape, speeds) -> float:
    return float((placement_loads(weight_row[None], phy[None], shape.gpus)[0] / speeds).max())


def _undouble(weight_row, phy, shape: Shape, speeds):
    """One layer's `phy [R]` with no expert twice on a GPU, node by node (groups stay on their
    nodes), then improved by exchanges; None when it cannot be done."""
    per_node = shape.gpus // shape.domains
    blocks = phy.reshape(shape.domains, per_node, shape.slots_per_gpu)
    node_speeds = speeds.reshape(shape.domains, per_node)
    fixed = [separate_duplicates(weight_row, block, node_speeds[node]) for node, block in enumerate(blocks)]
    if any(block is None for block in fixed):
        return None
    rows = np.repeat(weight_row[None], shape.domains, axis=0)  # one row per node: exchanged in one batch
    return improve_by_swaps(rows, np.stack(fixed), node_speeds, True).reshape(-1)


def rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus, policy="best", **options):
    """DeepSeek's entry point: `(phy2log [layers, R], log2phy [layers, E, X], logcnt [layers, E])`,
    int64. numpy (or lists) in, numpy out; a torch tensor in, torch tensors out (on its device).
    `policy="eplb"` reproduces DeepSeek's plans exactly; options as in `plan_experts`."""
    device = getattr(weight, "device", None)
    is_torch = type(weight).__module__.startswith("torch")
    if is_torch:
        weight = weight.detach().float().cpu().numpy()
    plan = plan_experts(weight, num_replicas, num_groups, num_nodes, num_gpus, policy, **options)
    out = (plan.phy2log, plan.log2phy, plan.logcnt)
    if not is_torch:
        return out
    import torch
    return tuple(torch.from_numpy(np.ascontiguousarray(a)).to(device) for a in out)
