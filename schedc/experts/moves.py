"""The moves of the joint policy, vectorized over rows (a row is one layer, or one layer's node).

Every function works on a batch of independent problems: `weight: [rows, n]` loads of the row's
n experts, `m` GPUs of `S` slots each (GPU g holds slots `[g*S, (g+1)*S)`), `speeds: [rows, m]`,
and a cap on the replicas of one expert (m when two replicas may not share a GPU). A placement is
`slots: [rows, m, S]` of expert indices; every replica carries an equal share of its expert.
"""

from __future__ import annotations

import numpy as np


def counts_of(slots: np.ndarray, n: int) -> np.ndarray:
    """Replicas per expert, `[rows, n]`, of a placement `[rows, m, S]`."""
    rows = slots.shape[0]
    flat = slots.reshape(rows, -1) + (np.arange(rows) * n)[:, None]
    return np.bincount(flat.ravel(), minlength=rows * n).reshape(rows, n)


def gpu_loads(weight: np.ndarray, slots: np.ndarray) -> np.ndarray:
    """Tokens per GPU, `[rows, m]`: each slot carries its expert's load / its replica count."""
    share = weight / np.maximum(counts_of(slots, weight.shape[1]), 1)
    rows = slots.shape[0]
    return _gather(share, slots.reshape(rows, -1)).reshape(slots.shape).sum(-1)


def _gather(values: np.ndarray, index: np.ndarray) -> np.ndarray:
    """`np.take_along_axis(values, index, axis=1)` for 2-D arrays, without its Python-level
    checks (the exchange search calls it every round)."""
    return values[np.arange(len(values))[:, None], index]


def objective(weight: np.ndarray, slots: np.ndarray, speeds: np.ndarray) -> np.ndarray:
    """The slowest GPU's time, `[rows]`: max over GPUs of load / speed."""
    return (gpu_loads(weight, slots) / speeds).max(axis=1)


def greedy_counts(weight: np.ndarray, total: int, cap: int) -> np.ndarray:
    """Replica counts `[rows, n]` summing to `total`: each extra replica to the expert with the
    largest load per replica that is still under `cap` (DeepSeek's rule, capped)."""
    rows, n = weight.shape
    counts = np.ones((rows, n), np.int64)
    row = np.arange(rows)
    for _ in range(total - n):
        share = np.where(counts < cap, weight / counts, -np.inf)
        counts[row, share.argmax(axis=1)] += 1
    return counts


def pack_replicas(weight: np.ndarray, counts: np.ndarray, speeds: np.ndarray, per_gpu: int,
                  distinct: bool) -> np.ndarray:
    """Largest replica first onto the GPU whose time after taking it is least, among GPUs with a
    free slot (and, when `distinct`, without a replica of the same expert). Returns `slots
    [rows, m, S]`; a row where no such GPU is left falls back to `round_robin`."""
    rows, n = weight.shape
    m = speeds.shape[1]
    expert = np.argsort(-(weight / counts), axis=1, kind="stable")
    items = _expand(expert, counts)
    share = np.take_along_axis(weight / counts, items, axis=1)
    load = np.zeros((rows, m))
    free = np.full((rows, m), per_gpu)
    holds = np.zeros((rows, n, m), bool)
    slots = np.full((rows, m, per_gpu), -1, np.int64)
    row = np.arange(rows)
    stuck = np.zeros(rows, bool)
    for k in range(items.shape[1]):
        e = items[:, k]
        allowed = free > 0
        if distinct:
            allowed &= ~holds[row, e]
        stuck |= ~allowed.any(axis=1)
        allowed |= ~allowed.any(axis=1, keepdims=True) & (free > 0)
        gpu = np.where(allowed, (load + share[:, k, None]) / speeds, np.inf).argmin(axis=1)
        slots[row, gpu, per_gpu - free[row, gpu]] = e
        load[row, gpu] += share[:, k]
        free[row, gpu] -= 1
        holds[row, e, gpu] = True
    if stuck.any():
        slots[stuck] = round_robin(counts[stuck], m, per_gpu)
    return slots


def _expand(expert: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Each row's experts in the given order, each repeated by its count: `[rows, total]`."""
    reps = np.take_along_axis(counts, expert, axis=1)
    return np.stack([np.repeat(e, r) for e, r in zip(expert, reps)])


def round_robin(counts: np.ndarray, m: int, per_gpu: int) -> np.ndarray:
    """A placement that never puts two replicas of an expert (count <= m) on one GPU: replicas in
    expert order, slot i of the list on GPU i mod m."""
    rows, n = counts.shape
    items = _expand(np.broadcast_to(np.arange(n), (rows, n)), counts)
    return items.reshape(rows, per_gpu, m).transpose(0, 2, 1).copy()


def improve_by_swaps(weight: np.ndarray, slots: np.ndarray, speeds: np.ndarray, distinct: bool,
                     bound: np.ndarray | None = None, rounds: int = 96) -> np.ndarray:
    """Local search: repeatedly exchange one replica on the slowest GPU with one on another GPU,
    the exchange that lowers the larger of the two GPUs' times most, while it lowers it (a row
    stops early within 1e-5 of its `bound`). Counts never change; with `distinct`, no exchange
    puts two replicas of an expert on one GPU."""
    slots = slots.copy()
    counts = np.maximum(counts_of(slots, weight.shape[1]), 1)  # experts absent from a row: unused
    active = np.arange(slots.shape[0])
    if bound is not None:
        active = active[objective(weight, slots, speeds) > bound * (1 + 1e-5)]
    for _ in range(rounds):
        if active.size == 0:
            break
        moved = _swap_once(weight[active], counts[active], slots[active], speeds[active], distinct)
        if moved is None:
            break
        new_slots, changed = moved
        slots[active] = new_slots
        active = active[changed]
        if bound is not None:
            active = active[objective(weight[active], slots[active], speeds[active]) > bound[active] * (1 + 1e-5)]
    return slots


def _swap_once(weight, counts, slots, speeds, distinct):
    """One exchange per row (see `improve_by_swaps`); `None` when no row improves, else the new
    slots and which rows changed."""
    rows, m, per_gpu = slots.shape
    row = np.arange(rows)
    item = _gather(weight / counts, slots.reshape(rows, -1))
    load = item.reshape(rows, m, per_gpu).sum(-1)
    top_gpu = (load / speeds).argmax(axis=1)
    top = (load / speeds)[row, top_gpu]
    a_exp, a_load = slots[row, top_gpu], item.reshape(rows, m, per_gpu)[row, top_gpu]
    b_gpu = np.repeat(np.arange(m), per_gpu)
    new_top = ((load[row, top_gpu][:, None, None] - a_load[:, :, None] + item[:, None, :])
               / speeds[row, top_gpu][:, None, None])
    new_other = (load[:, b_gpu][:, None, :] - item[:, None, :] + a_load[:, :, None]) / speeds[:, b_gpu][:, None, :]
    worse = np.maximum(new_top, new_other)
    bad = (b_gpu[None, None, :] == top_gpu[:, None, None])
    if distinct:  # b's expert already on the top GPU, or a's already on b's GPU
        b_on_top = (slots.reshape(rows, -1)[:, :, None] == a_exp[:, None, :]).any(axis=2)
        a_on_other = (slots[:, None, :, :] == a_exp[:, :, None, None]).any(axis=3)[:, :, b_gpu]
        bad = bad | b_on_top[:, None, :] | a_on_other
    worse = np.where(bad, np.inf, worse).reshape(rows, -1)
    best = worse.argmin(axis=1)
    changed = worse[row, best] < top * (1 - 1e-12) - 1e-12
    if not changed.any():
        return None
    r = row[changed]
    a_slot, b_flat = best[changed] // (m * per_gpu), best[changed] % (m * per_gpu)
    g, h, h_slot = top_gpu[changed], b_flat // per_gpu, b_flat % per_gpu
    out = slots.copy()
    out[r, g, a_slot], out[r, h, h_slot] = slots[r, h, h_slot], slots[r, g, a_slot]
    return out, changed


def separate_duplicates(weight: np.ndarray, slots: np.ndarray, speeds: np.ndarray) -> np.ndarray | None:
    """One placement (`slots [m, S]`, `weight [n]`, `speeds [m]`) with no two replicas of an
    expert on a GPU: each doubled replica is exchanged with a replica on another GPU, the exchange
    that keeps the pair's larger time least; None when some doubled replica has no partner. Slow
    (a Python loop), for the few layers where DeepSeek's doubled plan beats the search."""
    slots = slots.copy()
    m, per_gpu = slots.shape
    share = weight / np.bincount(slots.ravel(), minlength=weight.size).clip(1)
    for _ in range(slots.size):
        doubled = [(g, j) for g in range(m) for j in range(per_gpu) if slots[g, j] in slots[g, :j]]
        if not doubled:
            return slots
        g, j = doubled[0]
        load = share[slots].sum(axis=1)
        best, where = np.inf, None
        for h in range(m):
            if h == g or slots[g, j] in slots[h]:
                continue
            for k in range(per_gpu):
                if slots[h, k] in slots[g]:
                    continue
                change = share[slots[h, k]] - share[slots[g, j]]
                worse = max((load[g] + change) / speeds[g], (load[h] - change) / speeds[h])
                if worse < best:
                    best, where = worse, (h, k)
        if where is None:
            return None
        h, k = where
        slots[g, j], slots[h, k] = slots[h, k], slots[g, j]
    return None
