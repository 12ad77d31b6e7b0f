"""Moving experts between the members of an EP group while training runs (`--rebalance-every`).

A placement is `phy2log [R]` per MoE layer, the same on every member: the expert in each
physical slot, member m holding slots `m*S .. (m+1)*S - 1` (S = R / members) as `layer.experts`,
in slot order. A new placement differs from the old one in some slots; each such slot is a `Move`
of its new expert from a member that holds it now (the slot's own member when it holds a copy,
else the first holder in slot order), so every member derives the same moves from (old, new).

A moved expert travels as one message: its parameters and their optimizer state (whatever the
optimizer keeps per parameter: Adam's moments and step, SGD's momentum), serialized with
`torch.save`, behind a SHA-256 digest of the bytes. Transfers are point to point inside the EP
group (lengths first, then the messages, every send and receive posted before any wait, each
tagged with its move's index). Invariant: nothing is written into a slot until every member has
received and verified every message of the placement (the digests, then an all-reduce of the
verdicts); until then the old placement serves, and a failed digest keeps the old placement on
every member. Sources are read before anything is written, so moves may form cycles.
"""

from __future__ import annotations

import copy
import hashlib
import io
from dataclasses import dataclass

import torch
import torch.distributed as dist

from .groups import ExpertParallel


class MigrationFailed(RuntimeError):
    """A transfer of a placement could not finish (a member died or timed out): `what` names the
    layer and expert in flight."""

    def __init__(self, what: str, error: Exception):
        super().__init__(f"{what}: {str(error).splitlines()[0] if str(error) else type(error).__name__}")
        self.what = what


@dataclass(frozen=True)
class Move:
    """Expert `expert` into slot `slot` of layer `layer` (an index among the process's expert
    layers), copied from slot `source_slot` of the old placement."""

    layer: int
    slot: int
    expert: int
    source_slot: int
    per_member: int

    @property
    def source(self) -> int:
        return self.source_slot // self.per_member

    @property
    def target(self) -> int:
        return self.slot // self.per_member


def plan_moves(old: list[torch.Tensor], new: list[torch.Tensor], members: int) -> list[Move]:
    """The moves that turn placements `old` into `new` (one `phy2log [R]` per layer)."""
    moves = []
    for layer, (before, after) in enumerate(zip(old, new)):
        per_member = before.numel() // members
        for slot in torch.nonzero(before != after).flatten().tolist():
            expert = int(after[slot])
            holders = torch.nonzero(before == expert).flatten().tolist()
            if not holders:
                raise ValueError(f"layer {layer}: expert {expert} has no slot in the placement in use")
            mine = [h for h in holders if h // per_member == slot // per_member]
            moves.append(Move(layer, slot, expert, (mine or holders)[0], per_member))
    return moves


def pack(expert: torch.nn.Module, optimizer) -> bytes:
    """One expert's parameters and their optimizer state as bytes behind their SHA-256 digest."""
    params = list(expert.parameters())
    state = [{} if optimizer is None else optimizer.state.get(p, {}) for p in params]
    body = {"params": [p.detach().cpu() for p in params],
            "state": [{k: (v.detach().cpu() if torch.is_tensor(v) else v) for k, v in s.items()} for s in state]}
    buffer = io.BytesIO()
    torch.save(body, buffer)
    data = buffer.getvalue()
    return hashlib.sha256(data).digest() + data


def verify(message: bytes) -> dict | None:
    """The expert in a message, or None when its digest does not match its bytes."""
    digest, data = message[:32], message[32:]
    if hashlib.sha256(data).digest() != digest:
        return None
    return torch.load(io.BytesIO(data), weights_only=True)


def install(expert: torch.nn.Module, optimizer, body: dict) -> None:
    """Write a received expert into a slot's module (in place: the optimizer keeps its parameters)."""
    for p, value, state in zip(expert.parameters(), body["params"], body["state"]):
        with torch.no_grad():
            p.copy_(value.to(p.device, p.dtype))
        if optimizer is None:
            continue
        if state:
            optimizer.state[p] = {k: (v.to(p.device) if torch.is_tensor(v) and v.shape == p.shape else v)
                                  for k, v in state.items()}
        else:
            optimizer.state.pop(p, None)


def _process(place: ExpertParallel, member: int) -> int:
    return place.rank * place.size + member


def _wait(works, moves: list[Move], names: list[str], place: ExpertParallel) -> None:
    for index, work in works:
        try:
            work.wait()
        except RuntimeError as error:  # a peer died or timed out: name what was in flight
            move = moves[index]
            raise MigrationFailed(f"moving expert {move.expert} of {names[move.layer]} from EP member "
                                  f"{move.source} to member {move.target}", error) from None


def exchange(moves: list[Move], messages: dict[int, bytes], place: ExpertParallel, device,
             names: list[str]) -> dict[int, bytes]:
    """Send this member's outgoing messages (`messages`: move index -> bytes) and receive its
    incoming ones; returns move index -> received bytes. Lengths first, then the bytes."""
    outgoing = [i for i, m in enumerate(moves) if m.source == place.member and m.target != place.member]
    incoming = [i for i, m in enumerate(moves) if m.target == place.member and m.source != place.member]
    lengths = {i: torch.zeros(1, dtype=torch.int64, device=device) for i in incoming}
    works = [(i, dist.isend(torch.tensor([len(messages[i])], dtype=torch.int64, device=device),
                            _process(place, moves[i].target), group=place.group, tag=i)) for i in outgoing]
    works += [(i, dist.irecv(lengths[i], _process(place, moves[i].source), group=place.group, tag=i))
              for i in incoming]
    _wait(works, moves, names, place)
    buffers = {i: torch.empty(int(lengths[i]), dtype=torch.uint8, device=device) for i in incoming}
    sent = {i: torch.frombuffer(bytearray(messages[i]), dtype=torch.uint8).to(device) for i in outgoing}
    works = [(i, dist.isend(sent[i], _process(place, moves[i].target), group=place.group, tag=i))
             for i in outgoing]
    works += [(i, dist.irecv(buffers[i], _process(place, moves[i].source), group=place.group, tag=i))
              for i in incoming]
    _wait(works, moves, names, place)
    return {i: bytes(buffers[i].cpu().numpy().tobytes()) for i in incoming}


def migrate(layers: list[torch.nn.Module], new: list[torch.Tensor], optimizer, place: ExpertParallel, device,
            names: list[str]) -> tuple[list[Move], int, bool]:
    """Move every layer to its placement in `new` (identical on every member): (the moves, bytes
    this member sent to others, whether it was committed). Raises `MigrationFailed` when a member
    cannot be reached; a digest that does not match keeps the old placement everywhere."""
    old = [layer.phy2log.clone() for layer in layers]
    moves = plan_moves(old, new, place.size)
    messages = {i: pack(layers[m.layer].experts[m.source_slot % m.per_member], optimizer)
                for i, m in enumerate(moves) if m.source == place.member}  # every source read before any write
    received = exchange(moves, messages, place, device, names) if place.size > 1 else {}
    bodies = {}
    for i, m in enumerate(moves):
        if m.target == place.member:
            bodies[i] = verify(received[i] if m.source != place.member else messages[i])
    verdict = torch.tensor([int(all(b is not None for b in bodies.values()))], device=device)
    if place.size > 1:
        try:
            dist.all_reduce(verdict, op=dist.ReduceOp.MIN, group=place.group)
        except RuntimeError as error:
            raise MigrationFailed("committing the new expert placement (waiting for every member's "
                                  "verdict)", error) from None
    sent = sum(len(data) for i, data in messages.items() if moves[i].target != place.member)
    if not int(verdict):
        return moves, sent, False
    for i, body in bodies.items():
        m = moves[i]
        install(layers[m.layer].experts[m.slot % m.per_member], optimizer, body)
    for layer, placement in zip(layers, new):
        layer.phy2log = placement.clone()
    return moves, sent, True


def add_redundant_slots(layers: list[torch.nn.Module], place: ExpertParallel, redundant: int) -> None:
    """Give every layer `redundant` more slots (`redundant / members` per member), each a copy of
    one of the member's own experts, so the first placement moves nothing; call before the
    optimizer is made (the copies are new parameters)."""
    extra = redundant // place.size
    if extra == 0:
        return
    for layer in layers:
        per = len(layer.experts)
        layer.experts = torch.nn.ModuleList(list(layer.experts)
                                            + [copy.deepcopy(layer.experts[i % per]) for i in range(extra)])
        owned = layer.phy2log.view(place.size, per)
        layer.phy2log = torch.cat([owned, owned[:, torch.arange(extra) % per]], dim=1).reshape(-1)
