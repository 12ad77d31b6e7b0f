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
    [rows, m, S]`; a row where no such GPU is left falls back to `round_robin`. Each step reads
    and writes the state through one flat index per row (cheaper in numpy than index pairs);
    tests/test_experts_construct_equivalence.py holds the plain version it matches bit for bit."""
    rows, n = weight.shape
    m = speeds.shape[1]
    expert = np.argsort(-(weight / counts), axis=1, kind="stable")
    items = _expand(expert, counts)
    share = np.take_along_axis(weight / counts, items, axis=1).T.copy()
    load = np.zeros((rows, m))
    free = np.full((rows, m), per_gpu)
    holds = np.zeros((rows * n, m), bool)  # row r, expert e at r * n + e: which GPUs hold it
    slots = np.full((rows, m, per_gpu), -1, np.int64)
    row_gpu, row_expert = np.arange(rows) * m, np.arange(rows) * n
    load_flat, free_flat, holds_flat, slot_flat = (a.reshape(-1) for a in (load, free, holds, slots))
    stuck = np.zeros(rows, bool)
    unit = bool((speeds == 1).all())  # x / 1 == x: no division needed
    for k, e in enumerate(items.T):
        has_free = free > 0
        allowed = has_free & ~holds[row_expert + e] if distinct else has_free
        after = load + share[k][:, None]
        key = np.where(allowed, after if unit else after / speeds, np.inf)
        gpu = key.argmin(axis=1)
        at = row_gpu + gpu
        if distinct:
            none = key.reshape(-1)[at] == np.inf  # no GPU allowed: any with a free slot
            if none.any():
                stuck |= none
                key[none] = np.where(has_free[none], after[none] if unit else after[none] / speeds[none], np.inf)
                gpu[none] = key[none].argmin(axis=1)
                at = row_gpu + gpu
        left = free_flat[at] - 1
        slot_flat[at * per_gpu + per_gpu - 1 - left] = e
        free_flat[at] = left
        load_flat[at] += share[k]
        holds_flat[(row_expert + e) * m + gpu] = True
    if stuck.any():
        slots[stuck] = round_robin(counts[stuck], m, per_gpu)
    return slots


def _expand(expert: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Each row's experts in the given order, each repeated by its count: `[rows, total]`."""
    reps = np.take_along_axis(counts, expert, axis=1)
    return np.repeat(expert.ravel(), reps.ravel()).reshape(len(expert), -1)  # every row's total is equal


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
    arrays (gathered again only when some stop), each round's replica shares serve the loads,
    the bound check and the search, forbidden exchanges are priced at infinity as the scores are
    built, state is read through flat indices, and the score arrays and the table of which GPU
    holds which expert reuse their buffers (a fresh megabyte-sized array per round costs its page
    faults every time). tests/test_experts_speed_equivalence.py holds the plain version it
    matches exchange for exchange."""
    out = slots.copy()
    rows, m, per_gpu = slots.shape
    n = weight.shape[1]
    share = weight / np.maximum(counts_of(slots, n), 1)  # fixed: counts never change
    unit = bool((speeds == 1).all())  # x / 1 == x: the divisions are skipped
    idx, now = np.arange(rows), out.copy()
    buffers = np.empty((2, rows, per_gpu, m * per_gpu))  # pages touched once, rows shrink into it
    holds = np.zeros(rows * n * m, bool) if distinct else None  # (row, expert, GPU), cleared after use
    b_gpu = np.repeat(np.arange(m), per_gpu)  # the GPU of each slot
    for _ in range(rounds):
        if not idx.size:
            break
        at = now.reshape(len(now), -1) + (np.arange(len(now)) * n)[:, None]  # (row, expert) of each slot
        item = np.take(share, at)
        loads = item.reshape(now.shape).sum(-1)
        if bound is not None:  # rows within 1e-5 of their bound stop
            stop = (loads if unit else loads / speeds).max(axis=1) <= bound * (1 + 1e-5)
            if stop.any():
                out[idx[stop]] = now[stop]
                keep = ~stop
                idx, now, share, speeds, bound, loads, item = (a[keep] for a in
                                                               (idx, now, share, speeds, bound, loads, item))
                if not idx.size:
                    break
                at = now.reshape(len(now), -1) + (np.arange(len(now)) * n)[:, None]
        changed = _exchange(now, item, at, loads, speeds, b_gpu, holds, unit, buffers[:, :idx.size])
        if not changed.all():
            out[idx[~changed]] = now[~changed]
            idx, now, share, speeds = idx[changed], now[changed], share[changed], speeds[changed]
            bound = None if bound is None else bound[changed]
    out[idx] = now
    return out


def _exchange(slots, item, at, loads, speeds, b_gpu, holds, unit, buffers) -> np.ndarray:
    """One round of `improve_by_swaps` in place on `slots`; returns which rows changed. `item`,
    `at [rows, m*S]`: each slot's share and its (row, expert) index; `holds`: a cleared flat
    `(row, expert, GPU)` table when two replicas of an expert may not share a GPU, else None.
    Scores `[rows, S, m*S]`: the larger of the top GPU's and the other GPU's time after
    exchanging slot a of the top GPU with slot b elsewhere; an exchange that is not allowed (b on
    the top GPU; with `holds`, b's expert already on the top GPU or a's on b's GPU) gets an
    infinite share, so its score is infinite."""
    rows, m, per_gpu = slots.shape
    row = np.arange(rows)
    times = loads if unit else loads / speeds
    top_gpu = times.argmax(axis=1)
    top = times[row, top_gpu]
    a_load = item.reshape(rows, m, per_gpu)[row, top_gpu]
    banned_b = b_gpu == top_gpu[:, None]
    a_share = a_load[:, :, None]  # [rows, S, 1], or [rows, S, m] with the forbidden GPUs at inf
    if holds is not None:
        cell = at * m
        mark = cell + b_gpu
        holds[mark] = True
        banned_b |= holds[cell + top_gpu[:, None]]
        a_cell = at.reshape(rows, m, per_gpu)[row, top_gpu]
        a_share = np.where(holds.reshape(-1, m)[a_cell], np.inf, a_share)
        holds[mark] = False
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
