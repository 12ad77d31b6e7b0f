"""joint.construct keeps each GPU's room and key up to date where a replica lands instead of
computing them afresh at every step, and moves.pack_replicas reads its state through flat indices;
each must build the same placements, bit for bit, as its plain version below (the code it
replaced), on tight and loose targets, equal and unequal speeds, with and without a cap of one
replica per GPU."""

import numpy as np
import pytest

from schedc.experts import joint, moves

_WINDOW = joint._WINDOW


def plain_construct(weight: np.ndarray, target: np.ndarray, speeds: np.ndarray, per_gpu: int,
              cap: int) -> np.ndarray:
    """joint.construct as it was written first: room, usability and keys computed afresh from
    the loads at every step."""
    rows, n = weight.shape
    m = speeds.shape[1]
    order = np.argsort(-weight, axis=1, kind="stable")
    ordered = np.take_along_axis(weight, order, axis=1)
    values, experts = ordered.T.copy(), order.T.copy()
    smallest = ordered[:, -1:]
    capacity = target[:, None] * speeds
    load = np.zeros((rows, m))
    free = np.full((rows, m), per_gpu)
    slots = np.full((rows, m, per_gpu), -1, np.int64)
    remaining = np.full(rows, m * per_gpu)
    per_replica = target * speeds.max(axis=1)
    whole = per_replica + 1e-9  # the most one replica may carry
    scale = None if (speeds == 1).all() else speeds  # x / 1 == x: no division needed
    for k in range(n):
        value = values[k]
        room = capacity - load - (free - 1) * smallest
        has_room = free > 0
        usable = has_room & (value[:, None] <= room + 1e-9)
        count = np.ones(rows, np.int64)
        hard = np.flatnonzero(~usable.any(axis=1) | (value > whole))
        if hard.size:
            most = np.minimum(cap, remaining[hard] - (n - k - 1))
            count[hard], usable[hard] = _plain_split(value[hard], per_replica[hard], room[hard],
                                               has_room[hard], most)
        _plain_place(slots, load, free, usable, experts[k], value, count, scale, hard.size > 0)
        remaining -= count
    return joint._fill(weight, slots, capacity, cap)


def _plain_split(value, per_replica, room, has_room, most):
    """For experts that need more than one replica (or fit nowhere whole): the fewest replicas,
    trying `WINDOW` counts from the least possible, that fit on that many distinct GPUs with a free
    slot. Returns the count and the GPUs it may use (any with a free slot where none fits)."""
    row = np.arange(value.shape[0])
    fewest = np.minimum(np.maximum(np.ceil(value / per_replica - 1e-9), 1).astype(np.int64), most)
    count = fewest[:, None] + _WINDOW
    fits = has_room[:, None, :] & ((value[:, None] / count)[:, :, None] <= room[:, None, :] + 1e-9)
    good = (fits.sum(axis=2) >= count) & (count <= most[:, None])
    pick = good.argmax(axis=1)  # the first count that fits; `found`: whether any does
    found = good.any(axis=1)
    chosen = np.minimum(np.where(found, fewest + pick, fewest), has_room.sum(axis=1))
    return chosen, np.where(found[:, None], fits[row, pick], has_room)


def _plain_place(slots, load, free, usable, expert, value, count, scale, maybe_many: bool) -> None:
    """Put `count` replicas of each row's `expert` on its fullest usable GPUs (in place); `scale`:
    the GPUs' speeds (None when all are 1); `maybe_many`: whether some count may exceed 1."""
    rows, m, per_gpu = slots.shape
    key = np.where(usable, -load if scale is None else -load / scale, np.inf)
    many = np.flatnonzero(count > 1) if maybe_many else ()
    if not len(many):  # one replica each: one GPU per row
        r, g = np.arange(rows), key.argmin(axis=1)
        slots[r, g, per_gpu - free[r, g]] = expert
        load[r, g] += value
        free[r, g] -= 1
        return
    width = int(count.max())
    chosen = np.repeat(key.argmin(axis=1)[:, None], width, axis=1)
    chosen[many] = np.argsort(key[many], axis=1, kind="stable")[:, :width]
    mask = np.arange(width) < count[:, None]
    r, g = np.nonzero(mask)[0], chosen[mask]
    slots[r, g, per_gpu - free[r, g]] = expert[r]
    load[r, g] += (value / count)[r]
    free[r, g] -= 1


def plain_pack_replicas(weight: np.ndarray, counts: np.ndarray, speeds: np.ndarray, per_gpu: int,
                  distinct: bool) -> np.ndarray:
    """moves.pack_replicas as it was written first: state indexed by (row, GPU) pairs."""
    rows, n = weight.shape
    m = speeds.shape[1]
    expert = np.argsort(-(weight / counts), axis=1, kind="stable")
    items = moves._expand(expert, counts)
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
        slots[stuck] = moves.round_robin(counts[stuck], m, per_gpu)
    return slots


@pytest.mark.parametrize("seed", range(24))
def test_construct_matches_the_plain_version(seed):
    rng = np.random.default_rng(seed)
    rows, n, m = int(rng.integers(1, 40)), int(rng.integers(2, 70)), int(rng.integers(1, 10))
    per_gpu = int(rng.integers(-(-n // m), -(-n // m) + 4))  # at least one slot per expert
    skew = rng.choice([0.0, 0.6, 1.0, 1.6])
    base = 1.0 / np.arange(1, n + 1) ** skew
    weight = np.round(np.stack([rng.permutation(base) for _ in range(rows)]) * rng.uniform(50, 5000))
    weight[:, rng.integers(n)] += rng.integers(0, 2)  # an occasional tie broken, most kept
    speeds = np.ones((rows, m)) if seed % 3 else rng.choice([0.5, 1.0, 1.5, 2.0], (rows, m))
    cap = m if seed % 2 else m * per_gpu - n + 1
    bound = joint.lower_bound(weight, m * per_gpu, speeds, cap)
    target = bound * rng.choice([1.0, 1.01, 1.05, 1.2, 1.6], rows)
    got = joint.construct(weight, target, speeds, per_gpu, cap)
    want = plain_construct(weight, target, speeds, per_gpu, cap)
    assert np.array_equal(got, want)


def test_construct_matches_on_deepseek_v3_nodes():
    """The rows `rebalance_experts` builds for V3's prefill (a node of 8 GPUs, 64 experts, 72
    slots), Zipf 1.0 loads, at the 8 targets of a construction round."""
    rng = np.random.default_rng(5)
    base = 1.0 / np.arange(1, 65)
    weight = np.round(np.stack([rng.permutation(base) for _ in range(30)]) * 25_000)
    speeds = np.ones((30, 8))
    bound = joint.lower_bound(weight, 72, speeds, 8)
    target = (bound[:, None] * (1 + 0.25 * np.array(joint.TARGETS))).ravel()
    many = np.repeat(np.arange(30), len(joint.TARGETS))
    assert np.array_equal(joint.construct(weight[many], target, speeds[many], 9, 8),
                          plain_construct(weight[many], target, speeds[many], 9, 8))


@pytest.mark.parametrize("seed", range(16))
def test_pack_replicas_matches_the_plain_version(seed):
    rng = np.random.default_rng(100 + seed)
    rows, n, m = int(rng.integers(1, 40)), int(rng.integers(2, 70)), int(rng.integers(1, 10))
    per_gpu = int(rng.integers(-(-n // m), -(-n // m) + 4))
    distinct = bool(seed % 2)
    cap = m if distinct else m * per_gpu - n + 1
    weight = np.round(rng.lognormal(0, rng.choice([0.3, 1.0, 2.0]), (rows, n)) * 100)
    speeds = np.ones((rows, m)) if seed % 3 else rng.choice([0.5, 1.0, 2.0], (rows, m))
    counts = moves.greedy_counts(weight, m * per_gpu, cap)
    if seed % 4 == 3:  # counts that leave some rows no allowed GPU late on: the round-robin fallback
        counts = np.zeros_like(counts) + 1
        counts[:, 0] += m * per_gpu - n
    got = moves.pack_replicas(weight, counts, speeds, per_gpu, distinct)
    assert np.array_equal(got, plain_pack_replicas(weight, counts, speeds, per_gpu, distinct))


def test_construct_takes_integer_and_float32_loads_as_float64():
    rng = np.random.default_rng(9)
    weight = rng.integers(1, 1000, (20, 24))
    speeds = np.ones((20, 4))
    target = joint.lower_bound(weight.astype(float), 32, speeds, 4) * 1.02
    want = joint.construct(weight.astype(float), target, speeds, 8, 4)
    assert np.array_equal(joint.construct(weight, target, speeds, 8, 4), want)
    assert np.array_equal(joint.construct(weight.astype(np.float32), target, speeds, 8, 4), want)
