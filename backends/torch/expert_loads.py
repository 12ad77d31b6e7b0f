"""Counting tokens per expert from a router's top-k indices, and applying a placement to them.

    counter = ExpertLoadCounter(num_layers, num_experts)
    handles = counter.attach(routers)          # a forward hook on each layer's gate module
    for batch in batches: model(batch)
    weight = counter.loads()                   # numpy [layers, experts], for rebalance_experts

A hook reads the top-k expert indices from the gate's output: the output itself when it is an
integer tensor, the last integer tensor of a tuple (e.g. `(weights, indices)`), or whatever
`select(output)` returns.
"""

from __future__ import annotations

import torch


def count_tokens(indices: torch.Tensor, num_experts: int) -> torch.Tensor:
    """Tokens routed to each expert, `[num_experts]`, from top-k indices of any shape."""
    return torch.bincount(indices.reshape(-1).long().cpu(), minlength=num_experts)[:num_experts]


def _indices(output, select):
    if select is not None:
        return select(output)
    if isinstance(output, torch.Tensor) and not output.is_floating_point():
        return output
    if isinstance(output, (tuple, list)):
        found = [x for x in output if isinstance(x, torch.Tensor) and not x.is_floating_point()]
        if found:
            return found[-1]
    raise TypeError("cannot find the top-k indices in the router's output (an integer tensor, or a "
                    "tuple holding one); pass select=lambda output: ... to attach()")


class ExpertLoadCounter:
    """Accumulates `counts: [layers, experts]` tokens per expert over the batches it sees."""

    def __init__(self, num_layers: int, num_experts: int):
        self.num_experts = num_experts
        self.counts = torch.zeros(num_layers, num_experts, dtype=torch.int64)

    def record(self, layer: int, indices: torch.Tensor) -> None:
        """Add one batch's top-k indices of `layer`."""
        self.counts[layer] += count_tokens(indices, self.num_experts)

    def hook(self, layer: int, select=None):
        """A forward hook for `layer`'s gate module."""
        def forward_hook(_module, _inputs, output):
            self.record(layer, _indices(output, select).detach())
        return forward_hook

    def attach(self, gates, select=None) -> list:
        """Register a hook on each gate (layer order); returns the handles (`.remove()` them)."""
        return [gate.register_forward_hook(self.hook(layer, select)) for layer, gate in enumerate(gates)]

    def loads(self):
        """The counts as a float64 numpy array `[layers, experts]`."""
        return self.counts.double().numpy()

    def reset(self) -> None:
        self.counts.zero_()


def route_to_slots(indices: torch.Tensor, phy2log: torch.Tensor, num_experts: int) -> torch.Tensor:
    """The physical slot of each routed (token, choice) pair, same shape as `indices`, when
    `phy2log [R]` (the expert in each slot) is in place: the n-th pair routed to an expert (in
    `indices`' flat order) goes to its replica n mod (its replica count), replicas in slot order.
    One slot per expert in expert order (`phy2log` = 0..E-1) returns the indices themselves."""
    phy2log = torch.as_tensor(phy2log, device=indices.device).long()
    if phy2log.numel() == num_experts and torch.equal(phy2log, torch.arange(num_experts, device=phy2log.device)):
        return indices
    flat = indices.reshape(-1).long()
    order = torch.argsort(flat, stable=True)
    sorted_ids = flat[order]
    counts = torch.bincount(flat, minlength=num_experts)
    start = torch.cumsum(counts, 0) - counts
    nth = torch.empty_like(flat)
    nth[order] = torch.arange(flat.numel(), device=flat.device) - start[sorted_ids]
    replicas = torch.bincount(phy2log, minlength=num_experts)
    by_expert = torch.argsort(phy2log, stable=True)  # slots grouped by expert, in slot order
    copy = torch.arange(phy2log.numel(), device=flat.device) - (torch.cumsum(replicas, 0) - replicas)[phy2log[by_expert]]
    table = torch.full((num_experts, int(replicas.max())), -1, dtype=torch.long, device=flat.device)
    table[phy2log[by_expert], copy] = by_expert  # table[e, c]: the slot of expert e's c-th copy
    return table[flat, nth % replicas[flat].clamp(min=1)].view(indices.shape)


def tokens_per_gpu(indices: torch.Tensor, phy2log, num_gpus: int) -> torch.Tensor:
    """Tokens each GPU receives for one layer when `phy2log [R]` is in place (`route_to_slots`;
    GPU g holds slots g*R/num_gpus ..)."""
    phy2log = torch.as_tensor(phy2log).long()
    slot = route_to_slots(indices.reshape(-1).long().cpu(), phy2log, int(phy2log.max()) + 1)
    return torch.bincount(slot // (phy2log.numel() // num_gpus), minlength=num_gpus)
