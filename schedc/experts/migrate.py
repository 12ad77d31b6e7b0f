"""Migration-aware rebalancing: keep as many experts in their slots as the balance allows.

`relabel` renames the new plan's GPUs and slots so that it matches the previous placement as
closely as possible (an assignment solve per layer, `scipy.optimize.linear_sum_assignment`;
GPUs only trade places with GPUs of the same speed, and when hierarchical whole nodes with whole
nodes), which changes no GPU's load. `limited_moves` trades balance for moves: starting from the
previous placement, it changes one slot at a time (or exchanges two), the change that most
lowers the slowest GPU, until `max_moves` slots differ.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .validate import Shape

EPS = 1e-9


def _assign(score: np.ndarray, allowed: np.ndarray) -> tuple[np.ndarray, float]:
    """The permutation (new -> old) maximizing `score` over allowed pairs, and its value."""
    from scipy.optimize import linear_sum_assignment
    cost = np.where(allowed, -score, score.size * (np.abs(score).max() + 1) + 1)
    rows, cols = linear_sum_assignment(cost)
    perm = np.empty(len(rows), np.int64)
    perm[rows] = cols
    return perm, float(score[rows, cols].sum())


def _gpu_permutation(new: np.ndarray, old: np.ndarray, shape: Shape, speeds: np.ndarray) -> np.ndarray:
    """For one layer (`[M, S]` each): where each new GPU's contents go."""
    experts = shape.experts
    new_count = np.stack([np.bincount(g, minlength=experts) for g in new])
    old_count = np.stack([np.bincount(g, minlength=experts) for g in old])
    if new_count.max() <= 1 and old_count.max() <= 1:
        overlap = new_count @ old_count.T
    else:
        overlap = np.minimum(new_count[:, None, :], old_count[None, :, :]).sum(axis=2)
    same_speed = speeds[:, None] == speeds[None, :]
    nodes, per_node = shape.domains, shape.gpus // shape.domains
    if nodes == 1:
        return _assign(overlap, same_speed)[0]
    inner, value = {}, np.zeros((nodes, nodes))
    for a in range(nodes):
        for b in range(nodes):
            block = (slice(a * per_node, (a + 1) * per_node), slice(b * per_node, (b + 1) * per_node))
            allowed = same_speed[block]
            perm, value[a, b] = _assign(overlap[block], allowed)
            ok = allowed[np.arange(per_node), perm].all()
            inner[a, b] = perm if ok else None
            value[a, b] = value[a, b] if ok else -1
    node_perm, _ = _assign(value, value >= 0)
    return np.concatenate([node_perm[a] * per_node + inner[a, node_perm[a]] for a in range(nodes)])


def _order_slots(content: np.ndarray, previous: np.ndarray) -> np.ndarray:
    """`content` (one GPU's experts) ordered so that each expert still in `previous` keeps its
    slot there."""
    left = list(content)
    out = [-1] * len(previous)
    for j, expert in enumerate(previous):
        if expert in left:
            out[j] = expert
            left.remove(expert)
    for j in range(len(out)):
        if out[j] < 0:
            out[j] = left.pop(0)
    return np.array(out, np.int64)


def relabel(phy2log: np.ndarray, previous: np.ndarray, shape: Shape, speeds: np.ndarray) -> np.ndarray:
    """`phy2log [layers, R]` with GPUs and slots renamed to keep the most slots of `previous`;
    every GPU's load is unchanged."""
    out = np.empty_like(phy2log)
    per_gpu = shape.slots_per_gpu
    for layer in range(shape.layers):
        new = phy2log[layer].reshape(shape.gpus, per_gpu)
        old = previous[layer].reshape(shape.gpus, per_gpu)
        perm = _gpu_permutation(new, old, shape, speeds)
        placed = np.empty_like(new)
        for gpu in range(shape.gpus):
            placed[perm[gpu]] = _order_slots(new[gpu], old[perm[gpu]])
        out[layer] = placed.reshape(-1)
    return out


def migrate(weight, phy2log, previous, shape: Shape, speeds, distinct: bool, max_moves, tolerance=None):
    """The plan to apply after `previous`: `(phy2log, moves [layers])`. Without `max_moves`, the
    new plan relabelled; with it, layers needing more moves get `limited_moves` instead. With
    `tolerance`, a layer takes the fewest moves from `previous` (greedy, `limited_moves`) that
    bring its slowest GPU within `1 + tolerance` of the new plan's, when that is fewer moves."""
    out = relabel(phy2log, previous, shape, speeds)
    moves = (out != previous).sum(axis=1)
    if tolerance is not None:
        target = (placement_time(weight, out, shape, speeds)) * (1 + tolerance)
        for layer in np.flatnonzero(moves > 0):
            budget = int(moves[layer] if max_moves is None else min(moves[layer], max_moves))
            near = limited_moves(weight[layer], previous[layer], shape, speeds, distinct, budget, target[layer])
            if placement_time(weight[layer][None], near[None], shape, speeds)[0] <= target[layer] + EPS:
                out[layer] = near
    if max_moves is not None:
        for layer in np.flatnonzero((out != previous).sum(axis=1) > max_moves):
            out[layer] = limited_moves(weight[layer], previous[layer], shape, speeds, distinct, max_moves)
    return out, (out != previous).sum(axis=1)


def placement_time(weight, phy2log, shape: Shape, speeds) -> np.ndarray:
    """The slowest GPU's time per layer, `[layers]` (`moves.objective` of `phy2log [layers, R]`)."""
    from .moves import objective
    return objective(weight, phy2log.reshape(len(phy2log), shape.gpus, -1), speeds)


def limited_moves(weight, previous, shape: Shape, speeds, distinct: bool, max_moves: int,
                  target: float | None = None) -> np.ndarray:
    """Greedy descent from `previous` (`[R]`, one layer) on the slowest GPU's time under
    `weight [E]`: each step the change of one slot, or the exchange of two, that lowers it most
    (or leaves fewer GPUs at it); never more than `max_moves` slots different from `previous`,
    never an expert without a replica, and, when hierarchical, experts stay on their node. With
    `target`, it stops as soon as the slowest GPU's time is at most `target`."""
    slots = previous.copy()
    home = _home_nodes(previous, shape)
    for _ in range(4 * max_moves + 8):
        if target is not None and placement_time(weight[None], slots[None], shape, speeds)[0] <= target + EPS:
            break
        step = _best_step(weight, slots, previous, shape, speeds, distinct, home, max_moves)
        if step is None:
            break
        positions, experts = step
        slots[positions] = experts
    return slots


def _home_nodes(previous, shape: Shape) -> np.ndarray | None:
    """The node of each expert's first replica when hierarchical, else None."""
    if not shape.hierarchical or shape.domains == 1:
        return None
    node = np.arange(previous.size) // (previous.size // shape.domains)
    home = np.full(shape.experts, -1)
    home[previous[::-1]] = node[::-1]
    return home


class _State(NamedTuple):
    """One layer's placement seen from its slowest GPU `top`."""

    gpu_of: np.ndarray  # [R] the GPU of each slot
    held: np.ndarray  # [E, M] replicas of each expert on each GPU
    count: np.ndarray  # [E]
    share: np.ndarray  # [E] tokens per replica
    load: np.ndarray  # [M]
    top: int
    mine: np.ndarray  # slots of the top GPU
    others: np.ndarray  # every other slot


def _state(weight, slots, shape: Shape, speeds) -> _State:
    gpu_of = np.arange(slots.size) // shape.slots_per_gpu
    held = np.zeros((shape.experts, shape.gpus))
    np.add.at(held, (slots, gpu_of), 1)
    count = held.sum(axis=1)
    share = weight / np.maximum(count, 1)
    load = held.T @ share
    top = int((load / speeds).argmax())
    return _State(gpu_of, held, count, share, load, top, np.flatnonzero(gpu_of == top),
                  np.flatnonzero(gpu_of != top))


def _best_step(weight, slots, previous, shape: Shape, speeds, distinct, home, budget):
    """The best step as (positions, experts), or None when no step within the budget helps:
    the least slowest time, then the fewest GPUs at it, and better than now in one of them."""
    s = _state(weight, slots, shape, speeds)
    moves = [_replacements(weight, slots, s, shape, distinct, home), _exchanges(slots, s, shape, distinct, home)]
    positions = [m[0] for m in moves]
    experts = [m[1] for m in moves]
    loads = np.concatenate([m[2] for m in moves])
    cost = np.concatenate([((slots[p] == previous[p]).astype(int) - (e == previous[p])).sum(axis=1)
                           for p, e in zip(positions, experts)])
    valid = np.flatnonzero(int((slots != previous).sum()) + cost <= budget)
    if valid.size == 0:
        return None
    times = loads[valid] / speeds
    worst = times.max(axis=1)
    at_worst = (times >= worst[:, None] - EPS).sum(axis=1)
    now = s.load / speeds
    pick = np.lexsort((at_worst, worst))[0]
    lower = worst[pick] < now.max() - EPS
    fewer = worst[pick] <= now.max() + EPS and at_worst[pick] < (now >= now.max() - EPS).sum()
    if not (lower or fewer):
        return None
    k = valid[pick]
    if k < len(positions[0]):
        return positions[0][k], experts[0][k]
    return positions[1][k - len(positions[0])], experts[1][k - len(positions[0])]


def _replacements(weight, slots, s: _State, shape: Shape, distinct, home):
    """Admissible one-slot changes: another expert in a slot of the top GPU, or a new replica of
    one of its experts in another GPU's slot; `(positions [K, 1], experts [K, 1], loads [K, M])`."""
    p = np.concatenate([np.repeat(s.mine, shape.experts), np.tile(s.others, s.mine.size)])
    x = np.concatenate([np.tile(np.arange(shape.experts), s.mine.size), np.repeat(slots[s.mine], s.others.size)])
    y = slots[p]
    cap = shape.gpus if distinct else shape.replicas
    ok = (s.count[y] > 1) & (x != y) & (s.count[x] < cap)  # nobody loses its last replica
    if distinct:
        ok &= s.held[x, s.gpu_of[p]] == 0
    if home is not None:
        ok &= home[x] == s.gpu_of[p] // (shape.gpus // shape.domains)
    p, x, y = p[ok], x[ok], y[ok]
    cy, cx = s.count[y], s.count[x]
    up = weight[y] / (cy - 1) - weight[y] / cy  # y's other replicas grow
    down = weight[x] / cx - weight[x] / (cx + 1)  # x's replicas shrink
    loads = s.load + s.held[y] * up[:, None] - s.held[x] * down[:, None]
    loads[np.arange(p.size), s.gpu_of[p]] += weight[x] / (cx + 1) - weight[y] / (cy - 1)
    return p[:, None], x[:, None], loads


def _exchanges(slots, s: _State, shape: Shape, distinct, home):
    """Admissible exchanges of a slot of the top GPU with a slot elsewhere; the same triple with
    two positions per move."""
    p, q = np.repeat(s.mine, s.others.size), np.tile(s.others, s.mine.size)
    a, b = slots[p], slots[q]
    ok = a != b
    if distinct:
        ok &= (s.held[b, s.top] == 0) & (s.held[a, s.gpu_of[q]] == 0)
    if home is not None:
        per_node = shape.gpus // shape.domains
        ok &= (home[b] == s.top // per_node) & (home[a] == s.gpu_of[q] // per_node)
    p, q, a, b = p[ok], q[ok], a[ok], b[ok]
    loads = np.broadcast_to(s.load, (p.size, shape.gpus)).copy()
    rows = np.arange(p.size)
    loads[rows, s.top] += s.share[b] - s.share[a]
    loads[rows, s.gpu_of[q]] += s.share[a] - s.share[b]
    return np.stack([p, q], axis=1), np.stack([b, a], axis=1), loads
