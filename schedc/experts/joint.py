"""The joint policy: replica counts and placement chosen together to minimize the slowest GPU.

For each row (a layer, or a layer's node when hierarchical), three kinds of candidates:
1. DeepSeek's counts (capped so that no expert has more replicas than GPUs when duplicates are
   not allowed), packed largest-first onto the GPU that finishes earliest;
2. for rows still above their lower bound, a target-driven construction tried at several targets
   T at once: experts in decreasing load, each split into the fewest replicas that fit on
   distinct GPUs under T (keeping room for the slots those GPUs must still fill), and the slots
   left at the end filled by one more replica of the expert that gains most;
3. the caller adds DeepSeek's own plan and keeps the better.
Each candidate is then improved by exchanging replicas between the slowest GPU and the others
(`moves.improve_by_swaps`).
"""

from __future__ import annotations

import numpy as np

from .moves import counts_of, greedy_counts, improve_by_swaps, objective, pack_replicas

TARGETS = (0.0, 0.02, 0.05, 0.1, 0.2, 0.35, 0.55, 0.8)  # between the bound and the best so far
ROUNDS = 2  # grids of targets, each between the bound and the best placement of the last
OPEN_GAP = 5e-3  # rows further than this above their bound get the target-driven construction
CONSTRUCT_BUDGET = 4e6  # rows x targets x GPUs x experts per construction round: the worst rows first
WINDOW = 4  # replica counts tried per expert in one construction step, from the fewest possible
_WINDOW = np.arange(WINDOW)


def lower_bound(weight: np.ndarray, total: int, speeds: np.ndarray, cap: int) -> np.ndarray:
    """A lower bound `[rows]` on the slowest GPU's time for any placement: the mean time (all
    tokens over all speed), the largest expert spread over its `cap` fastest GPUs, and the
    largest replica's least possible size (`largest_replica`) on the fastest GPU."""
    mean = weight.sum(axis=1) / speeds.sum(axis=1)
    fastest = -np.sort(-speeds, axis=1)
    spread = np.cumsum(fastest, axis=1)[:, :cap]
    split = (weight.max(axis=1)[:, None] / spread).min(axis=1)
    return np.maximum(np.maximum(mean, split), largest_replica(weight, total) / fastest[:, 0])


def largest_replica(weight: np.ndarray, total: int) -> np.ndarray:
    """The least T `[rows]` (tokens) such that every expert can be cut into replicas of at most T
    within `total` slots: no plan's largest replica is smaller."""
    lo, hi = np.zeros(len(weight)), weight.max(axis=1) + 1e-12
    for _ in range(30):  # bisection, to 2^-30 of the largest load
        mid = (lo + hi) / 2
        need = np.maximum(1, np.ceil(weight / np.maximum(mid, 1e-300)[:, None] - 1e-9)).sum(axis=1)
        ok = need <= total
        hi, lo = np.where(ok, mid, hi), np.where(ok, lo, mid)
    return lo


def construct(weight: np.ndarray, target: np.ndarray, speeds: np.ndarray, per_gpu: int,
              cap: int) -> np.ndarray:
    """The target-driven construction (candidate 2 above) for `weight: [rows, n]`, one target
    per row; returns `slots [rows, m, S]` (a complete placement even where T is missed).

    A GPU's room for the expert at hand is its capacity (T x speed) less its load less the
    smallest expert's load for each other slot it must still fill. The loop runs over the n
    experts, so each step does the least whole-array work: the state is GPU-major, `[m, rows]`
    (a reduction over a short last axis costs numpy several times one over the first) and read
    and written through one flat index per replica; `slack` (room + 1e-9, -inf on a full GPU)
    and `neg_load` (minus the load: the key that picks the fullest GPU) change only where a
    replica lands, with the same float steps as computing them afresh (the reserve for the
    slots left, `(left - 1) x smallest`, from a table whose row for a full GPU is +inf); `spare`
    counts each row's slots beyond one per expert still to come, which only a split changes.
    tests/test_experts_construct_equivalence.py holds the plain version, which this matches bit
    for bit (float64 loads, as the planner passes; others are converted)."""
    weight = np.asarray(weight, float)
    rows, n = weight.shape
    m = speeds.shape[1]
    order = np.argsort(-weight, axis=1, kind="stable")
    ordered = np.take_along_axis(weight, order, axis=1)
    values, experts = ordered.T.copy(), order.T.copy()
    smallest = ordered[:, -1]
    capacity = (target[:, None] * speeds).T.copy()
    neg_load = np.zeros((m, rows))
    free = np.full((m, rows), per_gpu)
    reserve = np.arange(-1, per_gpu)[:, None] * smallest  # [left, rows]: (left - 1) x smallest
    reserve[0] = np.inf  # no slot left: no room
    slack = (capacity - reserve[per_gpu]) + 1e-9
    slots = np.full((m, rows, per_gpu), -1, np.int64)  # GPU-major like the state; transposed at the end
    spare = np.full(rows, m * per_gpu - n)
    per_replica = target * speeds.max(axis=1)
    whole = per_replica + 1e-9  # the most one replica may carry
    scale = None if (speeds == 1).all() else speeds.T.copy()  # x / 1 == x: no division needed
    every_row = np.arange(rows)
    neg_flat, free_flat, slack_flat, capacity_flat = (a.reshape(-1) for a in (neg_load, free, slack, capacity))
    slot_flat, reserve_flat = slots.reshape(-1), reserve.reshape(-1)
    for k in range(n):
        value = values[k]
        usable = slack >= value
        hard = np.flatnonzero(value > np.minimum(slack.max(axis=0), whole))
        many = None  # rows whose expert takes more than one replica this step
        if hard.size:  # fits nowhere whole; with no spare slot left, one replica on any free slot
            can_split = spare[hard] > 0
            if not can_split.all():
                stuck = np.zeros(rows, bool)
                stuck[hard[~can_split]] = True
                usable |= stuck & (free > 0)  # nothing fits on a hard row: its usable GPUs were none
            split = hard[can_split]
            if split.size:
                most = np.minimum(cap, spare[split] + 1)
                split_count, usable[:, split] = _split(value[split], per_replica[split], slack[:, split],
                                                       free[:, split] > 0, most)
                spare[split] -= split_count - 1
                if (split_count > 1).any():
                    many, many_count = split[split_count > 1], split_count[split_count > 1]
        key = np.where(usable, neg_load if scale is None else neg_load / scale, np.inf)
        if many is None:  # one replica each: one GPU per row
            r, g, share, expert = every_row, key.argmin(axis=0), value, experts[k]
        else:
            r, g, share = _replicas_placed(key, value, many, many_count)
            expert = experts[k][r]
        at = g * rows + r
        left = free_flat[at] - 1
        slot_flat[at * per_gpu + (per_gpu - 1) - left] = expert
        free_flat[at] = left
        neg_flat[at] -= share
        slack_flat[at] = (capacity_flat[at] + neg_flat[at]) - reserve_flat[left * rows + r] + 1e-9
    return _fill(weight, slots.transpose(1, 0, 2).copy(), capacity.T, cap)


def _split(value, per_replica, slack, has_room, most):
    """For experts that need more than one replica (or fit nowhere whole): the fewest replicas,
    trying `WINDOW` counts from the least possible, that fit on that many distinct GPUs with a free
    slot (`slack [m, rows]`: room + 1e-9, -inf on a full GPU; `has_room [m, rows]`). Returns the
    count and the GPUs it may use, `[m, rows]` (any with a free slot where none fits)."""
    row = np.arange(value.shape[0])
    fewest = np.minimum(np.maximum(np.ceil(value / per_replica - 1e-9), 1).astype(np.int64), most)
    count = fewest[:, None] + _WINDOW
    fits = slack[:, :, None] >= value[:, None] / count  # [m, rows, WINDOW]
    good = (fits.sum(axis=0) >= count) & (count <= most[:, None])
    pick = good.argmax(axis=1)  # the first count that fits, if any does
    found = good[row, pick]
    chosen = np.minimum(np.where(found, fewest + pick, fewest), has_room.sum(axis=0))
    return chosen, np.where(found, fits[:, row, pick], has_room)


def _replicas_placed(key, value, many, many_count):
    """Row, GPU and load of each replica placed this step: one on each row's GPU of least `key
    [m, rows]` (the fullest usable one; ties to the lower index), and for the rows `many`,
    `many_count` replicas on their GPUs of least key, each with its share of `value`."""
    rows = key.shape[1]
    extra = np.argsort(key[:, many], axis=0, kind="stable")[1:int(many_count.max())]
    more = np.arange(1, len(extra) + 1)[:, None] < many_count
    column = np.nonzero(more)[1]
    first_share = value.copy()
    first_share[many] = many_share = value[many] / many_count
    return (np.concatenate((np.arange(rows), many[column])), np.concatenate((key.argmin(axis=0), extra[more])),
            np.concatenate((first_share, many_share[column])))


def _fill(weight, slots, capacity, cap) -> np.ndarray:
    """Fill the slots still empty, one per row per step: on a GPU with a free slot, one more
    replica of the expert with the largest load per replica whose smaller share still fits
    there (any expert not on that GPU when none fits)."""
    per_gpu = slots.shape[2]
    todo = np.flatnonzero((slots < 0).any(axis=(1, 2)))
    while todo.size:
        sub, w, room = slots[todo], weight[todo], capacity[todo]
        rows, n = w.shape
        row = np.arange(rows)
        gpu = (sub < 0).any(axis=2).argmax(axis=1)
        filled = sub.reshape(rows, -1)
        counts = counts_of(np.where(filled >= 0, filled, n), n + 1)[:, :n]
        share = w / np.maximum(counts, 1)
        load = np.where(sub >= 0, np.take_along_axis(share, filled.clip(0), axis=1)
                        .reshape(sub.shape), 0).sum(axis=2)
        present = sub[row, gpu]
        here = (present[:, :, None] == np.arange(n)).any(axis=1)
        new_share = w / (counts + 1)
        allowed = ~here & (counts < cap)
        fits = allowed & (load[row, gpu][:, None] + new_share <= room[row, gpu][:, None] + 1e-9)
        pick = np.where(fits.any(axis=1), np.where(fits, share, -np.inf).argmax(axis=1),
                        np.where(allowed, new_share, np.inf).argmin(axis=1))
        sub[row, gpu, (present >= 0).sum(axis=1)] = pick
        slots[todo] = sub
        todo = todo[(sub < 0).any(axis=(1, 2))]
    return slots


def solve_rows(weight: np.ndarray, speeds: np.ndarray, per_gpu: int, cap: int, distinct: bool,
               bound: np.ndarray) -> np.ndarray:
    """The best placement found for each row: `slots [rows, m, S]` (see the module docstring)."""
    rows, n = weight.shape
    m = speeds.shape[1]
    counts = greedy_counts(weight, m * per_gpu, cap)
    slots = improve_by_swaps(weight, pack_replicas(weight, counts, speeds, per_gpu, distinct),
                             speeds, distinct, bound)
    value = objective(weight, slots, speeds)
    open_rows = np.flatnonzero(value > bound * (1 + OPEN_GAP) + 1e-12)
    most = max(1, int(CONSTRUCT_BUDGET // (len(TARGETS) * m * n)))
    excess = np.divide(value, bound, out=np.zeros_like(value), where=bound > 0)
    open_rows = open_rows[np.argsort(-excess[open_rows], kind="stable")[:most]]
    if open_rows.size == 0:
        return slots
    best, best_value = slots[open_rows], value[open_rows]
    todo = np.arange(open_rows.size)
    for _ in range(ROUNDS):  # a row the last round did not improve would get the same targets again
        rows_now = open_rows[todo]
        built, built_value = _target_round(weight[rows_now], speeds[rows_now], per_gpu, cap,
                                           bound[rows_now], best[todo], best_value[todo])
        improved = built_value < best_value[todo]
        best[todo], best_value[todo] = built, built_value
        todo = todo[improved]
        if not todo.size:
            break
    best = improve_by_swaps(weight[open_rows], best, speeds[open_rows], distinct, bound[open_rows])
    better = objective(weight[open_rows], best, speeds[open_rows]) < value[open_rows]
    slots[open_rows[better]] = best[better]
    return slots


def _target_round(weight, speeds, per_gpu, cap, bound, best, best_value):
    """Construct at `len(TARGETS)` targets between each row's bound and its best value so far;
    keep the better of the best construction and `best`."""
    rows, m = speeds.shape
    k = len(TARGETS)
    target = (bound[:, None] + (best_value - bound)[:, None] * np.array(TARGETS)).ravel()
    many = np.repeat(np.arange(rows), k)
    built = construct(weight[many], target, speeds[many], per_gpu, cap)
    scores = objective(weight[many], built, speeds[many]).reshape(rows, k)
    pick = scores.argmin(axis=1)
    new = built.reshape(rows, k, m, per_gpu)[np.arange(rows), pick]
    better = scores[np.arange(rows), pick] < best_value
    return np.where(better[:, None, None], new, best), np.where(better, scores[np.arange(rows), pick], best_value)


PARTITION_LIMIT = 20000  # enumerate group-to-node partitions only up to this many


def _partitions(groups: int, nodes: int) -> np.ndarray | None:
    """Every way to split `groups` into `nodes` unlabelled blocks of equal size, as `[P, groups]`
    block numbers; None when there are more than `PARTITION_LIMIT`."""
    from math import factorial
    size = groups // nodes
    if factorial(groups) // (factorial(size) ** nodes * factorial(nodes)) > PARTITION_LIMIT:
        return None
    out = []

    def extend(assignment: list[int], block: int) -> None:
        free = [g for g in range(groups) if assignment[g] < 0]
        if not free:
            out.append(list(assignment))
            return
        from itertools import combinations
        for rest in combinations(free[1:], size - 1):
            for g in (free[0], *rest):
                assignment[g] = block
            extend(assignment, block + 1)
            for g in (free[0], *rest):
                assignment[g] = -1

    extend([-1] * groups, 0)
    return np.array(out, np.int64)


def node_floor(group_load: np.ndarray, node_speed: np.ndarray) -> np.ndarray | None:
    """The least possible slowest-node time `[layers]` (node tokens / node speed) over every
    split of whole groups onto nodes: a lower bound for hierarchical placements. None when there
    are too many splits to enumerate."""
    layers, groups = group_load.shape
    nodes = node_speed.size
    blocks = _partitions(groups, nodes)
    if blocks is None:
        return None
    one_hot = np.eye(nodes)[blocks]  # [P, groups, nodes]
    totals = np.sort(np.einsum("lg,pgn->lpn", group_load, one_hot), axis=2)
    times = totals / np.sort(node_speed)  # heaviest block on the fastest node
    return times.max(axis=2).min(axis=1)


def pairing_bound(weight: np.ndarray, total: int, per_gpu: int, low: np.ndarray, high: np.ndarray,
                  points: int = 32) -> np.ndarray:
    """A lower bound `[rows]` (in tokens) that sees that a GPU holds `per_gpu` replicas: the GPU
    with the largest replica p1 holds per_gpu - 1 more, each at least the smallest replica pR, so
    any plan needs p1 + (per_gpu - 1) * pR. With p1 in [a, b], every expert has at least
    ceil(w / b) replicas, which leaves at most `total` - (the others' minimum) to any one expert:
    pR >= min over experts of w / that. Taken over a grid of intervals from `low` to `high`
    (where p1 must lie for a plan no slower than `high`); `high` where no interval allows less."""
    if per_gpu == 1:
        return low
    ratio = high / np.maximum(low, 1e-300)
    grid = low[:, None] * ratio[:, None] ** np.linspace(0, 1, points + 1)  # [rows, points + 1]
    a, b = grid[:, :-1], grid[:, 1:]
    need = np.maximum(1, np.ceil(weight[:, None, :] / np.maximum(b, 1e-300)[:, :, None] - 1e-9))
    spare = total - need.sum(axis=2)  # [rows, points]
    smallest = (weight[:, None, :] / (need + np.maximum(spare, 0)[:, :, None])).min(axis=2)
    value = np.where(spare >= 0, a + (per_gpu - 1) * smallest, np.inf)
    return np.maximum(np.minimum(value.min(axis=1), high), low)
