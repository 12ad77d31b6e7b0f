"""Rebalancing for drifted loads from the placement in use, fast: the live rebalancer's planner.

`stay_near(weight, previous, target, ...)` starts from `previous` (`[layers, R]`, the placement
serving now) and changes as few slots as it can until each layer's slowest GPU is within its
`target` (the caller passes 1 + tolerance times a lower bound, so a layer that reaches it is
within the tolerance of the best plan there is, without computing one):

1. replica counts, per layer that needs it: while the largest replica exceeds the target, one
   slot of the expert that can best spare a replica is given to the expert with the largest
   replica (on the least-loaded GPU that holds the donor and not the recipient);
2. exchanges, all layers at once: each round, in every layer still above its target, the
   exchange of a slot of its slowest GPU with a slot of one of its `PARTNERS` least-loaded GPUs
   that lowers the larger of the two GPUs' times the most, until the target is met or no exchange lowers it.

Invariants: every expert keeps at least one replica; with `distinct`, no GPU holds two replicas of
one expert (when `previous` holds none); the returned `reached [layers]` says which layers met
their target (the others are the caller's to plan another way). Deterministic: the same inputs give
the same placement (`schedc balance --previous` replays a live decision).
"""

from __future__ import annotations

import numpy as np

EPS = 1e-9
PARTNERS = 8  # exchanges with the slowest GPU are sought on this many least-loaded GPUs


def stay_near(weight: np.ndarray, previous: np.ndarray, target: np.ndarray, speeds: np.ndarray, gpus: int,
              distinct: bool, max_rounds: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """`(phy2log [layers, R], reached [layers])`: `previous` changed in as few slots as the
    greedy finds until each layer's slowest GPU time (tokens / speed, each replica an equal share
    of its expert) is at most `target [layers]`."""
    layers, replicas = previous.shape
    experts = weight.shape[1]
    slots = previous.copy()
    gpu_of = np.arange(replicas) // (replicas // gpus)
    held = np.zeros((layers, experts, gpus), np.int64)
    np.add.at(held, (np.arange(layers)[:, None], slots, gpu_of[None, :]), 1)
    count = held.sum(axis=2)
    for layer in np.flatnonzero((weight / np.maximum(count, 1)).max(axis=1) / speeds.max() > target + EPS):
        _spread_replicas(weight[layer], slots[layer], held[layer], count[layer], gpu_of, speeds, target[layer],
                         distinct)
    share = weight / np.maximum(count, 1)
    load = np.zeros((layers, gpus))
    np.add.at(load, (np.arange(layers)[:, None], gpu_of[None, :]), share[np.arange(layers)[:, None], slots])
    _exchange_rounds(slots, held, share, load, gpu_of, speeds, target, distinct,
                     max_rounds if max_rounds is not None else 4 * replicas)
    reached = (load / speeds).max(axis=1) <= target + EPS
    return slots, reached


def _spread_replicas(weight, slots, held, count, gpu_of, speeds, target: float, distinct: bool) -> None:
    """Phase 1 for one layer, in place: move replicas from the experts that can spare one (their
    share after losing it is the least) to the expert with the largest share, while that share
    is above `target` and the trade lowers the largest share."""
    gpus = held.shape[1]
    for _ in range(slots.size):
        share = weight / np.maximum(count, 1)
        taker = int(share.argmax())
        if share[taker] / speeds.max() <= target + EPS:
            return
        after = np.where(count > 1, weight / np.maximum(count - 1, 1), np.inf)
        after[taker] = np.inf
        giver = int(after.argmin())
        if not after[giver] < share[taker] - EPS:
            return  # no trade lowers the largest replica
        candidates = np.flatnonzero(slots == giver)
        if distinct:
            candidates = candidates[held[taker, gpu_of[candidates]] == 0]
        if candidates.size == 0:
            return
        load = np.bincount(gpu_of, weights=share[slots], minlength=gpus) / speeds
        slot = int(candidates[load[gpu_of[candidates]].argmin()])
        slots[slot] = taker
        held[giver, gpu_of[slot]] -= 1
        held[taker, gpu_of[slot]] += 1
        count[giver] -= 1
        count[taker] += 1


def _exchange_rounds(slots, held, share, load, gpu_of, speeds, target, distinct: bool, rounds: int) -> None:
    """Phase 2, in place over every layer: exchange rounds until each layer meets its target or
    no exchange lowers its slowest GPU."""
    gpus = load.shape[1]
    per_gpu = slots.shape[1] // gpus
    partners = min(gpus - 1, PARTNERS)
    active = np.flatnonzero((load / speeds).max(axis=1) > target + EPS)
    within = np.arange(per_gpu)
    for _ in range(rounds):
        if active.size == 0:
            return
        rows = active[:, None]
        times = load[active] / speeds
        top = times.argmax(axis=1)  # [A]
        mine = top[:, None] * per_gpu + within  # [A, S] slots of the slowest GPU
        light = np.argpartition(times, partners - 1, axis=1)[:, :partners] if partners < gpus - 1 else \
            np.argsort(times, axis=1)[:, :partners]  # [A, K] the least loaded GPUs
        theirs = (light[:, :, None] * per_gpu + within).reshape(len(active), -1)  # [A, K*S]
        a = slots[rows, mine]  # [A, S]
        b = slots[rows, theirs]  # [A, K*S]
        g = theirs // per_gpu
        delta = share[rows, a][:, :, None] - share[rows, b][:, None, :]  # [A, S, K*S]: tokens moved off top
        top_load = load[active, top][:, None, None]
        other = load[rows, g][:, None, :]
        worst = np.maximum((top_load - delta) / speeds[top][:, None, None], (other + delta) / speeds[g][:, None, :])
        ok = delta > EPS
        if distinct:
            ok &= (held[rows, b, top[:, None]] == 0)[:, None, :]
            ok &= held[active[:, None, None], a[:, :, None], g[:, None, :]] == 0
        worst = np.where(ok, worst, np.inf).reshape(len(active), -1)
        pick = worst.argmin(axis=1)
        better = worst[np.arange(len(active)), pick] < times[np.arange(len(active)), top] - EPS
        layer, pick, top = active[better], pick[better], top[better]
        p = top * per_gpu + pick // theirs.shape[1]
        q = theirs[better, pick % theirs.shape[1]]
        x, y = slots[layer, p], slots[layer, q]
        g = gpu_of[q]
        moved = share[layer, x] - share[layer, y]
        slots[layer, p], slots[layer, q] = y, x
        held[layer, x, top] -= 1
        held[layer, y, g] -= 1
        held[layer, y, top] += 1
        held[layer, x, g] += 1
        load[layer, top] -= moved
        load[layer, g] += moved
        active = layer[(load[layer] / speeds).max(axis=1) > target[layer] + EPS]
