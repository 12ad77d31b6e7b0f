"""Two-dimensional ranks: `ranks x E` processes, each pipeline rank held by an expert-parallel
(EP) group of E processes.

Process p is member `p % E` of pipeline rank `p // E` (an EP group is E consecutive processes, so
a group stays on one node when E divides the processes per node). Pipeline transfers go between
the same member of neighbouring groups. Every member holds the same stages; each MoE layer keeps
1/E of its experts (`shard_experts`); the dense parameters are replicated and their gradients
summed over the group after the step's backward (`sum_dense_gradients`). Each member trains on its
own E-th of every microbatch (`member_slice`) with the loss divided by E, so the summed gradients
are those of the whole microbatch under a mean loss, and the sum of the members' losses is the
whole microbatch's loss.

The expert contract a model's MoE layer follows: an attribute `num_experts`, its experts'
parameters under `.experts`, and `shard_experts(member, members, group)`, which keeps experts
`member * n / members` up to the next member's and remembers the group for its all-to-alls.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class ExpertParallel:
    """This process's place: pipeline rank `rank` (the plan's row), `member` of its EP group of
    `size`, and that group (None when size is 1)."""

    rank: int
    member: int
    size: int
    group: object = None

    def process_of(self, rank: int) -> int:
        """The process holding pipeline rank `rank` for this member (its transfer peer)."""
        return rank * self.size + self.member

    def describe(self) -> str:
        return f"rank {self.rank}" + (f" (EP member {self.member} of {self.size})" if self.size > 1 else "")


def place(process: int, size: int) -> tuple[int, int]:
    """(pipeline rank, member) of process `process` with EP groups of `size`."""
    return process // size, process % size


def join_groups(process: int, ranks: int, size: int) -> ExpertParallel:
    """Create every pipeline rank's EP group (each process creates them all, in one order) and
    return this process's place."""
    rank, member = place(process, size)
    group = None
    if size > 1:
        for r in range(ranks):
            made = dist.new_group(list(range(r * size, (r + 1) * size)))
            if r == rank:
                group = made
    return ExpertParallel(rank, member, size, group)


def expert_layers(modules) -> list[torch.nn.Module]:
    """The modules (inside `modules`) that follow the expert contract."""
    return [m for module in modules for m in module.modules() if hasattr(m, "shard_experts")]


def experts_problem(stages: list[torch.nn.Module], size: int) -> str | None:
    """Why these stages cannot run with EP groups of `size`, or None."""
    if size == 1:
        return None
    layers = expert_layers(stages)
    if not layers:
        return (f"--ep {size}, but the model has no expert layers (a module with num_experts and "
                "shard_experts(member, members, group)); leave out --ep, or use a MoE model such as "
                "examples/models/moe.py")
    for layer in layers:
        if layer.num_experts % size:
            return (f"--ep {size} must divide every MoE layer's experts, but a {type(layer).__name__} "
                    f"has {layer.num_experts}; choose --ep among the divisors of {layer.num_experts}")
    return None


def shard_experts(modules, place_: ExpertParallel) -> None:
    """Keep this member's experts in every expert layer of `modules` (all of them when size is 1)."""
    if place_.size > 1:
        for layer in expert_layers(modules):
            layer.shard_experts(place_.member, place_.size, place_.group)


def expert_parameter_ids(modules) -> set[int]:
    return {id(p) for layer in expert_layers(modules) for p in layer.experts.parameters()}


def sum_dense_gradients(modules, place_: ExpertParallel) -> None:
    """Sum the dense (non-expert) parameters' gradients over the EP group, in one all-reduce; a
    parameter without a gradient takes part as zeros, so every member sends the same layout."""
    if place_.size == 1:
        return
    experts = expert_parameter_ids(modules)
    dense = [p for module in modules for p in module.parameters() if id(p) not in experts]
    if not dense:
        return
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in dense]
    flat = torch.cat([g.reshape(-1) for g in grads])
    wire = flat.cpu() if flat.is_cuda and dist.get_backend(place_.group) == "gloo" else flat
    dist.all_reduce(wire, group=place_.group)
    flat = wire.to(flat.device)
    offset = 0
    for p, g in zip(dense, grads):
        p.grad = flat[offset:offset + g.numel()].view_as(g).clone()
        offset += g.numel()


def sync_gradients(modules, place_: ExpertParallel) -> None:
    """After a step's backward: the dense gradients summed over the EP group, and each replicated
    expert's copies given the sum of their gradients."""
    sum_dense_gradients(modules, place_)
    sum_replica_gradients(modules, place_)


def sum_replica_gradients(modules, place_: ExpertParallel) -> None:
    """Sum the gradients of each replicated expert's copies (slots holding the same expert in
    `layer.phy2log`, on any member) and give every copy the sum, in one all-reduce over the group:
    the copies stay identical and together train the one expert the single-process model has. A
    copy without a gradient takes part as zeros; when no copy has one, none gets one (an expert
    no token reached is left alone by the optimizer, as in the single-process run)."""
    rows, slots = [], []  # (layer, expert) rows; (layer, local slot, row) of this member
    layers = [layer for layer in expert_layers(modules) if hasattr(layer, "phy2log")]
    for n, layer in enumerate(layers):
        placement = layer.phy2log
        per = len(layer.experts)
        copies = torch.bincount(placement)
        replicated = {int(e): len(rows) + i for i, e in enumerate(torch.nonzero(copies > 1).flatten().tolist())}
        rows += [(n, e) for e in replicated]
        slots += [(n, i, replicated[int(e)]) for i, e in enumerate(placement[place_.member * per:(place_.member + 1) * per])
                  if int(e) in replicated]
    if not rows:
        return
    first = next(layers[rows[0][0]].experts[0].parameters())
    width = max(sum(p.numel() for p in layers[n].experts[0].parameters()) for n, _ in rows)
    table = torch.zeros(len(rows), width + 1, dtype=first.dtype, device=first.device)
    for n, i, row in slots:
        params = list(layers[n].experts[i].parameters())
        flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1)
                         for p in params])
        table[row, :flat.numel()] += flat
        table[row, width] += any(p.grad is not None for p in params)
    if place_.size > 1:
        wire = table.cpu() if table.is_cuda and dist.get_backend(place_.group) == "gloo" else table
        dist.all_reduce(wire, group=place_.group)
        table = wire.to(table.device)
    for n, i, row in slots:
        offset = 0
        for p in layers[n].experts[i].parameters():
            p.grad = table[row, offset:offset + p.numel()].view_as(p).clone() if table[row, width] > 0 else None
            offset += p.numel()


def member_slice(tensor: torch.Tensor, place_: ExpertParallel) -> torch.Tensor:
    """This member's E-th of a microbatch (rows along the first dimension)."""
    if place_.size == 1:
        return tensor
    return tensor.chunk(place_.size, dim=0)[place_.member].contiguous()


def slicing_problem(tensor: torch.Tensor, size: int) -> str | None:
    """Why a microbatch of this shape cannot be cut into `size` equal parts, or None."""
    if size > 1 and (tensor.dim() == 0 or tensor.shape[0] % size):
        rows = tensor.shape[0] if tensor.dim() else 0
        return (f"--ep {size} gives each EP member an equal part of every microbatch along its first "
                f"dimension, but make_batch's microbatches have {rows} rows there; make it a multiple of {size}")
    return None
