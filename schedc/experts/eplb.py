"""DeepSeek's EPLB, exactly, in numpy and vectorized over layers.

Same steps and tie-breaking as DeepSeek's `eplb.py` (float32 arithmetic as there, a stable sort
so that equal loads keep index order, the lowest index on equal minima): pack the expert groups
onto nodes, replicate within each node (each extra slot to the largest load / replica count),
pack the replicas onto the node's GPUs. The loops run over items, never over layers.
`tests/test_experts_eplb.py` checks it against a slow loop-by-loop torch oracle.
"""

from __future__ import annotations

import numpy as np


def balanced_packing(weight: np.ndarray, num_packs: int) -> tuple[np.ndarray, np.ndarray]:
    """Pack `weight: [rows, n]` items into `num_packs` packs of exactly n / num_packs items,
    heaviest first into the lightest pack with room. Returns `(pack_index, rank_in_pack)`, both
    `[rows, n]`."""
    rows, n = weight.shape
    per_pack = n // num_packs
    if per_pack == 1:
        return np.broadcast_to(np.arange(n), (rows, n)).copy(), np.zeros((rows, n), np.int64)
    order = np.argsort(-weight, axis=1, kind="stable")
    heaviest = np.take_along_axis(weight, order, axis=1).T.copy()  # [n, rows]: step k's item loads
    item_at = (order + (np.arange(rows) * n)[:, None]).T.copy()  # flat (row, item) of step k's items
    pack_index = np.empty(rows * n, np.int64)
    rank_in_pack = np.empty(rows * n, np.int64)
    pack_weight = np.zeros((rows, num_packs), weight.dtype)
    pack_items = np.zeros((rows, num_packs), np.int64)
    weight_flat, items_flat = pack_weight.reshape(-1), pack_items.reshape(-1)
    pack_at = np.arange(rows) * num_packs
    for k in range(n):  # state read and written through one flat index per row
        pack = np.where(pack_items < per_pack, pack_weight, np.inf).argmin(axis=1)
        at, item = pack_at + pack, item_at[k]
        pack_index[item] = pack
        held = items_flat[at]
        rank_in_pack[item] = held
        weight_flat[at] += heaviest[k]
        items_flat[at] = held + 1
    pack_index, rank_in_pack = pack_index.reshape(rows, n), rank_in_pack.reshape(rows, n)
    return pack_index, rank_in_pack


def replicate_experts(weight: np.ndarray, num_phy: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Give `weight: [rows, n]` experts `num_phy` slots: each extra slot to the expert with the
    largest load per replica. Returns `phy2log [rows, num_phy]`, `rank [rows, num_phy]` (the
    replica's number within its expert), `logcnt [rows, n]`."""
    rows, n = weight.shape
    phy2log = np.broadcast_to(np.arange(num_phy), (rows, num_phy)).copy()
    rank = np.zeros((rows, num_phy), np.int64)
    logcnt = np.ones((rows, n), np.int64)
    row = np.arange(rows)
    for slot in range(n, num_phy):
        expert = (weight / logcnt.astype(weight.dtype)).argmax(axis=1)
        phy2log[:, slot] = expert
        rank[:, slot] = logcnt[row, expert]
        logcnt[row, expert] += 1
    return phy2log, rank, logcnt


def _inverse(perm: np.ndarray) -> np.ndarray:
    """The inverse of each row's permutation."""
    inv = np.empty_like(perm)
    np.put_along_axis(inv, perm, np.broadcast_to(np.arange(perm.shape[1]), perm.shape), axis=1)
    return inv


def rebalance_hierarchical(weight: np.ndarray, num_replicas: int, num_groups: int,
                           num_nodes: int, num_gpus: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """DeepSeek's hierarchical policy on `weight: [layers, experts]` (float32). Returns
    `phy2log [layers, R]`, `phyrank [layers, R]`, `logcnt [layers, experts]`; the global policy
    is this with one group and one node."""
    layers, experts = weight.shape
    group_size = experts // num_groups
    groups_per_node = num_groups // num_nodes
    per_gpu = num_replicas // num_gpus
    per_node = experts // num_nodes
    # 1. whole groups onto nodes; experts renumbered node by node ("mlog")
    group_tokens = weight.reshape(layers, num_groups, group_size).sum(-1)
    group_pack, group_rank = balanced_packing(group_tokens, num_nodes)
    log2mlog = (((group_pack * groups_per_node + group_rank) * group_size)[:, :, None]
                + np.arange(group_size)).reshape(layers, experts)
    mlog2log = _inverse(log2mlog)
    # 2. replicas within each node: one row per (layer, node)
    mlog_tokens = np.take_along_axis(weight, mlog2log, axis=1).reshape(-1, per_node)
    phy2mlog, phyrank, mlogcnt = replicate_experts(mlog_tokens, num_replicas // num_nodes)
    # 3. replicas onto the node's GPUs
    phy_tokens = np.take_along_axis(mlog_tokens / mlogcnt.astype(weight.dtype), phy2mlog, axis=1)
    pack, rank_in_pack = balanced_packing(phy_tokens, num_gpus // num_nodes)
    pphy2phy = _inverse(pack * per_gpu + rank_in_pack)
    pphy2mlog = np.take_along_axis(phy2mlog, pphy2phy, axis=1)
    pphy2mlog = (pphy2mlog.reshape(layers, num_nodes, -1)
                 + np.arange(0, experts, per_node)[None, :, None]).reshape(layers, -1)
    phy2log = np.take_along_axis(mlog2log, pphy2mlog, axis=1)
    pphyrank = np.take_along_axis(phyrank, pphy2phy, axis=1).reshape(layers, -1)
    logcnt = np.take_along_axis(mlogcnt.reshape(layers, -1), log2mlog, axis=1)
    return phy2log, pphyrank, logcnt


def build_log2phy(phy2log: np.ndarray, phyrank: np.ndarray, logcnt: np.ndarray) -> np.ndarray:
    """`log2phy [layers, experts, X]`: the slot of each expert's replica number r, -1 padded."""
    layers, replicas = phy2log.shape
    width = int(logcnt.max())
    log2phy = np.full((layers, logcnt.shape[1] * width), -1, np.int64)
    np.put_along_axis(log2phy, phy2log * width + phyrank,
                      np.broadcast_to(np.arange(replicas), (layers, replicas)), axis=1)
    return log2phy.reshape(layers, logcnt.shape[1], width)


def replica_ranks(phy2log: np.ndarray) -> np.ndarray:
    """Number the replicas of each expert by slot order: `[layers, R]`, 0 for an expert's first
    slot, 1 for its second, ..."""
    layers, replicas = phy2log.shape
    order = np.argsort(phy2log, axis=1, kind="stable")
    sorted_ids = np.take_along_axis(phy2log, order, axis=1)
    starts = np.ones_like(sorted_ids, dtype=bool)
    starts[:, 1:] = sorted_ids[:, 1:] != sorted_ids[:, :-1]
    position = np.broadcast_to(np.arange(replicas), (layers, replicas))
    first = np.maximum.accumulate(np.where(starts, position, 0), axis=1)
    rank = np.empty_like(phy2log)
    np.put_along_axis(rank, order, position - first, axis=1)
    return rank


def rebalance_eplb(weight: np.ndarray, num_replicas: int, num_groups: int, num_nodes: int,
                   num_gpus: int, hierarchical: bool, with_log2phy: bool = True):
    """DeepSeek's `rebalance_experts` on checked arguments: `(phy2log, log2phy, logcnt)`
    (`log2phy` None when not `with_log2phy`: a caller that replaces the plan has no use for it)."""
    w32 = weight.astype(np.float32)
    if hierarchical:
        phy2log, phyrank, logcnt = rebalance_hierarchical(w32, num_replicas, num_groups, num_nodes, num_gpus)
    else:
        phy2log, phyrank, logcnt = rebalance_hierarchical(w32, num_replicas, 1, 1, num_gpus)
    return phy2log, build_log2phy(phy2log, phyrank, logcnt) if with_log2phy else None, logcnt
