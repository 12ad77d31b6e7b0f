"""moves.improve_by_swaps is the plain exchange search below made faster (compact active rows,
loads computed once a round, reused score buffers): the same exchanges, the same placements, bit
for bit."""

import numpy as np
import pytest

from schedc.experts import moves


def plain_improve_by_swaps(weight: np.ndarray, slots: np.ndarray, speeds: np.ndarray, distinct: bool,
                     bound: np.ndarray | None = None, rounds: int = 96) -> np.ndarray:
    """Local search: repeatedly exchange one replica on the slowest GPU with one on another GPU,
    the exchange that lowers the larger of the two GPUs' times most, while it lowers it (a row
    stops early within 1e-5 of its `bound`). Counts never change; with `distinct`, no exchange
    puts two replicas of an expert on one GPU."""
    slots = slots.copy()
    share = weight / np.maximum(moves.counts_of(slots, weight.shape[1]), 1)  # fixed: counts never change
    active = np.arange(slots.shape[0])
    if bound is not None:
        active = active[_slowest(share, slots, speeds) > bound * (1 + 1e-5)]
    for _ in range(rounds):
        if active.size == 0:
            break
        moved = _swap_once(share[active], slots[active], speeds[active], distinct)
        if moved is None:
            break
        new_slots, changed = moved
        slots[active] = new_slots
        active = active[changed]
        if bound is not None:
            active = active[_slowest(share[active], slots[active], speeds[active]) > bound[active] * (1 + 1e-5)]
    return slots


def _slowest(share: np.ndarray, slots: np.ndarray, speeds: np.ndarray) -> np.ndarray:
    """`objective` from each replica's share `[rows, n]` (the same float steps as `gpu_loads`)."""
    loads = moves._gather(share, slots.reshape(slots.shape[0], -1)).reshape(slots.shape).sum(-1)
    return (loads / speeds).max(axis=1)


def _swap_once(share, slots, speeds, distinct):
    """One exchange per row (see `improve_by_swaps`); `None` when no row improves, else the new
    slots and which rows changed. Every candidate exchange of a top-GPU slot `a` with a slot `b`
    elsewhere is scored at once, `[rows, S, m, S]`: the larger of the two GPUs' times after it
    (the same float steps as `(load - a + b) / speed`; without the divisions when every speed is
    1, where they change nothing); forbidden exchanges are masked in place, from per-GPU tables
    (`holds [rows, n, m]`: which GPU holds which expert) rather than slot-by-slot comparisons."""
    rows, m, per_gpu = slots.shape
    row = np.arange(rows)
    flat = slots.reshape(rows, -1)
    item = moves._gather(share, flat)
    load = item.reshape(rows, m, per_gpu).sum(-1)
    unit = bool((speeds == 1).all())
    times = load if unit else load / speeds
    top_gpu = times.argmax(axis=1)
    top = times[row, top_gpu]
    a_exp, a_load = slots[row, top_gpu], item.reshape(rows, m, per_gpu)[row, top_gpu]
    b_gpu = np.repeat(np.arange(m), per_gpu)
    new_top = (load[row, top_gpu][:, None] - a_load)[:, :, None] + item[:, None, :]
    new_other = (load[:, b_gpu] - item)[:, None, :] + a_load[:, :, None]
    if not unit:
        new_top /= speeds[row, top_gpu][:, None, None]
        new_other /= speeds[:, b_gpu][:, None, :]
    worse = np.maximum(new_top, new_other, out=new_top).reshape(rows, per_gpu, m, per_gpu)
    bad = np.zeros((rows, 1, m, 1), bool)
    bad[row, 0, top_gpu, 0] = True  # b on the top GPU itself
    if distinct:  # b's expert already on the top GPU, or a's already on b's GPU
        holds = np.zeros((rows, share.shape[1], m), bool)
        holds[row[:, None], flat, b_gpu[None, :]] = True
        b_on_top = holds[row[:, None], flat, top_gpu[:, None]].reshape(rows, 1, m, per_gpu)
        bad = bad | b_on_top | holds[row[:, None], a_exp][:, :, :, None]
    np.copyto(worse, np.inf, where=bad)
    worse = worse.reshape(rows, -1)
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


def _case(seed: int, rows: int, n: int, m: int, per_gpu: int, distinct: bool):
    rng = np.random.default_rng(seed)
    weight = np.round(rng.lognormal(0, 1.2, (rows, n)) * 1000)
    counts = moves.greedy_counts(weight, m * per_gpu, m if distinct else m * per_gpu)
    speeds = np.ones((rows, m)) if seed % 2 else rng.uniform(0.5, 1.5, (rows, m))
    slots = moves.pack_replicas(weight, counts, speeds, per_gpu, distinct)
    return weight, slots, speeds


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("distinct", [True, False])
@pytest.mark.parametrize("sizes", [(12, 16, 4, 6), (6, 64, 8, 9), (3, 40, 16, 3)])
def test_the_fast_search_makes_the_plain_searchs_exchanges(seed, distinct, sizes):
    rows, n, m, per_gpu = sizes
    weight, slots, speeds = _case(seed, rows, n, m, per_gpu, distinct)
    mean = weight.sum(axis=1) / speeds.sum(axis=1)
    for bound in (None, mean, mean * 1.02):
        for rounds in (1, 5, 96):
            want = plain_improve_by_swaps(weight, slots, speeds, distinct, bound, rounds)
            got = moves.improve_by_swaps(weight, slots, speeds, distinct, bound, rounds)
            assert np.array_equal(got, want)
