"""Migration-aware rebalancing: keep as many experts in their slots as the balance allows.

`relabel` renames the new plan's GPUs and slots so that it matches the previous placement as
closely as possible (an assignment solve per layer, `scipy.optimize.linear_sum_assignment`;
GPUs only trade places with GPUs of the same speed, and when hierarchical whole nodes with whole
nodes), which changes no GPU's load. `limited_moves` trades balance for moves: starting from the
previous placement, it changes one slot at a time (or exchanges two), the change that most
lowers the slowest GPU, until `max_moves` slots differ.
"""

from __future__ import annotations

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


def migrate(weight, phy2log, previous, shape: Shape, speeds, distinct: bool, max_moves):
    """The plan to apply after `previous`: `(phy2log, moves [layers])`. Without `max_moves`, the
    new plan relabelled; with it, layers needing more moves get `limited_moves` instead."""
    out = relabel(phy2log, previous, shape, speeds)
    if max_moves is not None:
        for layer in np.flatnonzero((out != previous).sum(axis=1) > max_moves):
            out[layer] = limited_moves(weight[layer], previous[layer], shape, speeds, distinct, max_moves)
    return out, (out != previous).sum(axis=1)


def limited_moves(weight, previous, shape: Shape, speeds, distinct: bool, max_moves: int) -> np.ndarray:
    """Greedy descent from `previous` (`[R]`, one layer) on the slowest GPU's time under
    `weight [E]`: each step the change of one slot, or the exchange of two, that lowers it most
    (or leaves fewer GPUs at it); never more than `max_moves` slots different from `previous`,
    never an expert without a replica, and, when hierarchical, experts stay on their node."""
    slots = previous.copy()
    home = _home_nodes(previous, shape)
    for _ in range(4 * max_moves + 8):
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


def _best_step(weight, slots, previous, shape: Shape, speeds, distinct, home, budget):
    """The best step as (positions, experts), or None when no step within the budget helps.
    Steps touch the slowest GPU: another expert in one of its slots, a new replica of one of its
    experts in another GPU's slot, or an exchange of one of its slots with another GPU's."""
    gpus, per_gpu, experts = shape.gpus, shape.slots_per_gpu, shape.experts
    gpu_of = np.arange(slots.size) // per_gpu
    held = np.zeros((experts, gpus))
    np.add.at(held, (slots, gpu_of), 1)
    count = held.sum(axis=1)
    share = weight / np.maximum(count, 1)
    load = held.T @ share
    time = load / speeds
    top = int(time.argmax())
    mine = np.arange(top * per_gpu, (top + 1) * per_gpu)
    others = np.flatnonzero(gpu_of != top)
    # replace moves: (slot p, new expert x)
    p = np.concatenate([np.repeat(mine, experts), np.tile(others, per_gpu)])
    x = np.concatenate([np.tile(np.arange(experts), per_gpu), np.repeat(slots[mine], others.size)])
    cap = gpus if distinct else shape.replicas
    y = slots[p]
    ok = (count[y] > 1) & (x != y) & (count[x] < cap)
    if distinct:
        ok &= held[x, gpu_of[p]] == 0
    if home is not None:
        ok &= home[x] == gpu_of[p] // (gpus // shape.domains)
    p, x = p[ok], x[ok]  # loads only for the admissible moves
    new_load = _replace_loads(weight, held, count, load, slots, gpu_of, p, x)
    ok = np.ones(p.size, bool)
    cost = (slots[p] == previous[p]).astype(int) - (x == previous[p])
    # exchanges: (slot p on the slowest GPU, slot q elsewhere)
    sp, sq = np.repeat(mine, others.size), np.tile(others, per_gpu)
    a, b = slots[sp], slots[sq]
    swap_load = np.broadcast_to(load, (sp.size, gpus)).copy()
    rows = np.arange(sp.size)
    swap_load[rows, top] += share[b] - share[a]
    swap_load[rows, gpu_of[sq]] += share[a] - share[b]
    swap_ok = a != b
    if distinct:
        swap_ok &= (held[b, top] == 0) & (held[a, gpu_of[sq]] == 0)
    if home is not None:
        node = gpu_of[sq] // (gpus // shape.domains)
        swap_ok &= (home[b] == top // (gpus // shape.domains)) & (home[a] == node)
    swap_cost = ((slots[sp] == previous[sp]).astype(int) - (b == previous[sp])
                 + (slots[sq] == previous[sq]) - (a == previous[sq]))
    used = int((slots != previous).sum())
    loads = np.concatenate([new_load, swap_load])
    valid = np.concatenate([ok, swap_ok]) & (used + np.concatenate([cost, swap_cost]) <= budget)
    if not valid.any():
        return None
    times = loads[valid] / speeds
    worst = times.max(axis=1)
    at_worst = (times >= worst[:, None] - EPS).sum(axis=1)
    now_worst, now_at = time.max(), int((time >= time.max() - EPS).sum())
    pick = np.lexsort((at_worst, worst))[0]
    if worst[pick] > now_worst - EPS and not (worst[pick] <= now_worst + EPS and at_worst[pick] < now_at):
        return None
    k = np.flatnonzero(valid)[pick]
    if k < p.size:
        return np.array([p[k]]), np.array([x[k]])
    k -= p.size
    return np.array([sp[k], sq[k]]), np.array([b[k], a[k]])


def _replace_loads(weight, held, count, load, slots, gpu_of, p, x):
    """GPU loads `[K, M]` after each replace move (slot p[k] takes expert x[k])."""
    y = slots[p]
    cy, cx = count[y], count[x]
    up = np.where(cy > 1, weight[y] / np.maximum(cy - 1, 1) - weight[y] / cy, 0)
    down = weight[x] / cx - weight[x] / (cx + 1)
    new = load + held[y] * up[:, None] - held[x] * down[:, None]
    rows = np.arange(p.size)
    new[rows, gpu_of[p]] += weight[x] / (cx + 1) - np.where(cy > 1, weight[y] / np.maximum(cy - 1, 1), 0)
    return new
