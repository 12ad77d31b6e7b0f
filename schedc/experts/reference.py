"""A slow, obvious torch version of DeepSeek's EPLB: the test oracle for `policy="eplb"` and the
benchmark's stand-in for DeepSeek's own code (which is not installable here).

It follows DeepSeek's algorithm step by step and its kind of code: torch tensors, the packing as
a Python loop over rows and items with tensor scalars, replication as a loop over the extra
slots (vectorized over rows, as there), index arithmetic in torch. torch is imported inside the
functions.
"""

from __future__ import annotations


def _pack(weights, packs: int):
    """`weights: [rows, n]`: heaviest first into the lightest pack with room, n / packs items per
    pack. Returns pack and rank-in-pack, `[rows, n]` each."""
    import torch
    rows, n = weights.shape
    per_pack = n // packs
    if per_pack == 1:
        return torch.arange(n).expand(rows, n).clone(), torch.zeros(rows, n, dtype=torch.int64)
    pack_of = torch.full((rows, n), -1, dtype=torch.int64)
    rank_of = torch.full((rows, n), -1, dtype=torch.int64)
    order = torch.sort(weights, dim=-1, descending=True, stable=True).indices
    for r in range(rows):
        totals, sizes = [0] * packs, [0] * packs
        for item in order[r]:
            pack = min((p for p in range(packs) if sizes[p] < per_pack), key=totals.__getitem__)
            pack_of[r, item], rank_of[r, item] = pack, sizes[pack]
            totals[pack] += weights[r, item]
            sizes[pack] += 1
    return pack_of, rank_of


def _replicate(weights, slots: int):
    """`weights: [rows, n]`: each extra slot to the expert with the largest load per replica.
    Returns phy2log and replica rank `[rows, slots]`, and counts `[rows, n]`."""
    import torch
    rows, n = weights.shape
    phy2log = torch.arange(slots).repeat(rows, 1)
    rank = torch.zeros(rows, slots, dtype=torch.int64)
    count = torch.ones(rows, n, dtype=torch.int64)
    every = torch.arange(rows)
    for slot in range(n, slots):
        expert = (weights / count).argmax(dim=-1)
        phy2log[:, slot] = expert
        rank[:, slot] = count[every, expert]
        count[every, expert] += 1
    return phy2log, rank, count


def _invert(perm):
    import torch
    return torch.argsort(perm, dim=-1)


def reference_rebalance(weight, num_replicas: int, num_groups: int, num_nodes: int, num_gpus: int):
    """DeepSeek's `rebalance_experts`: `(phy2log, log2phy, logcnt)` as torch int64 tensors;
    `weight: [layers, experts]`, any array."""
    import torch
    weight = torch.as_tensor(weight).float().cpu()
    if num_groups % num_nodes:
        num_groups, num_nodes = 1, 1
    layers, experts = weight.shape
    size, per_node = experts // num_groups, experts // num_nodes
    per_gpu = num_replicas // num_gpus
    # groups onto nodes; number the experts node by node
    node_of, rank_of = _pack(weight.view(layers, num_groups, size).sum(-1), num_nodes)
    first = (node_of * (num_groups // num_nodes) + rank_of) * size
    log2node_order = (first.unsqueeze(-1) + torch.arange(size)).flatten(-2)
    node_order2log = _invert(log2node_order)
    # replicas within each node, one row per (layer, node)
    node_weights = weight.gather(-1, node_order2log).view(-1, per_node)
    phy2local, rank, count = _replicate(node_weights, num_replicas // num_nodes)
    # replicas onto the node's GPUs
    share = (node_weights / count).gather(-1, phy2local)
    gpu_of, pos = _pack(share, num_gpus // num_nodes)
    slot2phy = _invert(gpu_of * per_gpu + pos)
    slot2local = phy2local.gather(-1, slot2phy).view(layers, num_nodes, -1)
    slot2node_order = (slot2local + torch.arange(0, experts, per_node).view(1, -1, 1)).flatten(-2)
    phy2log = node_order2log.gather(-1, slot2node_order)
    phyrank = rank.gather(-1, slot2phy).view(layers, -1)
    logcnt = count.view(layers, -1).gather(-1, log2node_order)
    width = int(logcnt.max())
    log2phy = torch.full((layers, experts * width), -1, dtype=torch.int64)
    log2phy.scatter_(-1, phy2log * width + phyrank, torch.arange(num_replicas).expand(layers, -1))
    return phy2log, log2phy.view(layers, experts, width), logcnt
