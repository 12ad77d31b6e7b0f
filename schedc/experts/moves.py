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
    unit = bool((speeds == 1).all())  # x / 1 == x: no division needed
    for k in range(items.shape[1]):
        e = items[:, k]
        has_free = free > 0
        allowed = has_free & ~holds[row, e] if distinct else has_free
        none = ~allowed.any(axis=1)
        if none.any():
            stuck |= none
            allowed = np.where(none[:, None], has_free, allowed)
        after = load + share[:, k, None]
        gpu = np.where(allowed, after if unit else after / speeds, np.inf).argmin(axis=1)
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
    puts two replicas of an expert on one GPU. The rows still searching are kept as compact
    arrays (gathered again only when some stop), each round's loads serve both the bound check
    and the search, forbidden exchanges are priced at infinity as the scores are built, and the
    two `[rows, S, m*S]` score arrays reuse their buffers (a fresh megabyte-sized array per round
    costs its page faults every time). tests/test_experts_speed_equivalence.py holds the plain
    version it matches exchange for exchange."""
    out = slots.copy()
    rows, m, per_gpu = slots.shape
    share = weight / np.maximum(counts_of(slots, weight.shape[1]), 1)  # fixed: counts never change
    unit = bool((speeds == 1).all())  # x / 1 == x: the divisions are skipped
    idx, now = np.arange(rows), out.copy()
    buffers = np.empty((2, rows, per_gpu, m * per_gpu))  # pages touched once, rows shrink into it
    for _ in range(rounds):
        if not idx.size:
            break
        loads = _gather(share, now.reshape(len(now), -1)).reshape(now.shape).sum(-1)
        if bound is not None:  # rows within 1e-5 of their bound stop
            stop = (loads if unit else loads / speeds).max(axis=1) <= bound * (1 + 1e-5)
            if stop.any():
                out[idx[stop]] = now[stop]
                idx, now, share, speeds, bound, loads = (a[~stop] for a in (idx, now, share, speeds, bound, loads))
                if not idx.size:
                    break
        changed = _exchange(share, now, loads, speeds, distinct, unit, buffers[:, :idx.size])
        if not changed.all():
            out[idx[~changed]] = now[~changed]
            idx, now, share, speeds = idx[changed], now[changed], share[changed], speeds[changed]
            bound = None if bound is None else bound[changed]
    out[idx] = now
    return out


def _exchange(share, slots, loads, speeds, distinct, unit, buffers) -> np.ndarray:
    """One round of `improve_by_swaps` in place on `slots`; returns which rows changed. Scores
    `[rows, S, m*S]`: the larger of the top GPU's and the other GPU's time after exchanging slot
    a of the top GPU with slot b elsewhere; an exchange that is not allowed (b on the top GPU;
    with `distinct`, b's expert already on the top GPU or a's on b's GPU) gets an infinite
    share, so its score is infinite."""
    rows, m, per_gpu = slots.shape
    row, flat = np.arange(rows), slots.reshape(rows, -1)
    item = _gather(share, flat)
    times = loads if unit else loads / speeds
    top_gpu = times.argmax(axis=1)
    top = times[row, top_gpu]
    a_exp, a_load = slots[row, top_gpu], item.reshape(rows, m, per_gpu)[row, top_gpu]
    b_gpu = np.repeat(np.arange(m), per_gpu)
    banned_b = b_gpu == top_gpu[:, None]
    a_share = a_load[:, :, None]  # [rows, S, 1], or [rows, S, m] with the forbidden GPUs at inf
    if distinct:
        holds = np.zeros((rows, share.shape[1], m), bool)
        holds[row[:, None], flat, b_gpu] = True
        banned_b |= holds[row[:, None], flat, top_gpu[:, None]]
        a_share = np.where(holds[row[:, None], a_exp], np.inf, a_share)
    new_top, new_other = buffers
    np.add((loads[row, top_gpu][:, None] - a_load)[:, :, None],
           np.where(banned_b, np.inf, item)[:, None, :], out=new_top)
    np.copyto(new_other.reshape(rows, per_gpu, m, per_gpu), a_share[:, :, :, None])
    new_other += (loads[:, b_gpu] - item)[:, None, :]
    if not unit:
        new_top /= speeds[row, top_gpu][:, None, None]
        new_other /= speeds[:, b_gpu][:, None, :]
    worse = np.maximum(new_top, new_other, out=new_top).reshape(rows, -1)
    best = worse.argmin(axis=1)
    changed = worse[row, best] < top * (1 - 1e-12) - 1e-12
    r = row[changed]
    a_slot, b_flat = best[changed] // (m * per_gpu), best[changed] % (m * per_gpu)
    g, h, h_slot = top_gpu[changed], b_flat // per_gpu, b_flat % per_gpu
    slots[r, g, a_slot], slots[r, h, h_slot] = slots[r, h, h_slot], slots[r, g, a_slot]
    return changed


def separate_duplicates(weight: np.ndarray, slots: np.ndarray, speeds: np.ndarray) -> np.ndarray | None:
    """One placement (`slots [m, S]`, `weight [n]`, `speeds [m]`) with no two replicas of an
    expert on a GPU: each doubled replica (the first in GPU-then-slot order) is exchanged with a
    replica on another GPU, the exchange that keeps the pair's larger time least (the first such
    in the same order); None when some doubled replica has no partner. Loops over the doubled
    replicas only, for the few layers where DeepSeek's doubled plan beats the search."""
    slots = slots.copy()
    m, per_gpu = slots.shape
    share = weight / np.bincount(slots.ravel(), minlength=weight.size).clip(1)
    earlier = np.tri(per_gpu, k=-1, dtype=bool)  # [j, i]: slot i comes before slot j
    for _ in range(slots.size):
        doubled = ((slots[:, :, None] == slots[:, None, :]) & earlier).any(axis=2).ravel()
        if not doubled.any():
            return slots
        g, j = divmod(int(doubled.argmax()), per_gpu)
        load = share[slots].sum(axis=1)
        expert = slots[g, j]
        change = share[slots] - share[expert]  # [m, S]: the partner's share less the doubled one's
        worse = np.maximum((load[g] + change) / speeds[g], (load[:, None] - change) / speeds[:, None])
        allowed = (np.arange(m) != g) & ~(slots == expert).any(axis=1)
        allowed = allowed[:, None] & ~np.isin(slots, slots[g])
        if not allowed.any():
            return None
        h, k = divmod(int(np.where(allowed, worse, np.inf).argmin()), per_gpu)
        slots[g, j], slots[h, k] = slots[h, k], slots[g, j]
    return None
