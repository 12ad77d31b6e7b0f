"""What the ranks rely on besides torch.distributed: the digest of the plan they all compare before
running (`plan_digest`), the proof from the plan alone of which sends a peer has certainly received
(`sends_received_before`), the give-back of a sent output's storage (`release_storage`), and the
metadata a first transfer carries (`WIRE_DTYPES`, `META_SIZE`).
"""

from __future__ import annotations

import hashlib

import torch
import torch.distributed as dist

from ...ir import OpKind, Plan, format_plan_text
from ...lang.spec import PipelineSpec

WIRE_DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.int64, torch.int32]
META_SIZE = 10  # dtype code, ndim, up to 8 sizes


def plan_digest(spec: PipelineSpec, plan: Plan) -> str:
    """A hash of the plan and the sizes it was compiled for: ranks compare it before running."""
    text = f"{spec.ranks} {spec.num_stages} {spec.microbatches} {spec.placement}\n{format_plan_text(plan)}"
    return hashlib.sha256(text.encode()).hexdigest()


def sends_received_before(plan: Plan, rank: int) -> dict[int, int]:
    """For each RECV in `rank`'s list (by index): how many of `rank`'s sends to that peer the peer
    has certainly received by then. The k-th message from a peer is its k-th SEND to `rank`
    (channels are FIFO); the peer runs its list in order, so every RECV from `rank` that comes
    before that SEND in its list had completed when it sent."""
    receives = (OpKind.RECV_F, OpKind.RECV_B)
    sends = (OpKind.SEND_F, OpKind.SEND_B)
    proof: dict[int, int] = {}
    received_by_peer: dict[int, list[int]] = {}  # peer -> count before each of its sends to rank
    next_message: dict[int, int] = {}
    for index, instr in enumerate(plan.ranks[rank]):
        if instr.kind not in receives:
            continue
        peer = instr.peer
        if peer not in received_by_peer:
            counts, seen = [], 0
            for other in plan.ranks[peer]:
                if other.peer == rank and other.kind in receives:
                    seen += 1
                elif other.peer == rank and other.kind in sends:
                    counts.append(seen)
            received_by_peer[peer] = counts
        k = next_message.get(peer, 0)
        next_message[peer] = k + 1
        proof[index] = received_by_peer[peer][k]
    return proof


def release_storage(output: torch.Tensor) -> None:
    """Give a sent stage output's storage back while keeping its place in the autograd graph (as
    Megatron and DualPipe do): its data becomes one element broadcast to its shape, which is all
    backward looks at (shapes, not values). An op that saved the output for its backward (tanh,
    softmax) keeps its own reference, so gradients are unchanged; the memory comes back when no op
    did. Left as they are: a view (it keeps its base alive anyway) and a tensor no op of the stage
    made (no `grad_fn`: the stage returned its input or a tensor of its own, which others hold)."""
    if output._base is None and output.grad_fn is not None:
        output.data = torch.empty((), dtype=output.dtype, device=output.device).expand(output.shape)


def sum_with_mirror(modules: dict, process: int, group, comm_device, device) -> None:
    """GRAD_SUM: exchange and sum the gradients of each stage's replicas with the mirror rank's
    process, stage by stage in stage order (the mirror holds the same stages in the other
    direction), so both hold the gradient of the whole batch."""
    for d, s in sorted(modules, key=lambda k: k[1]):
        for p in modules[(d, s)].parameters():
            grad = p.grad.detach() if p.grad is not None else torch.zeros_like(p)
            mine = grad.to(comm_device, copy=True)
            theirs = torch.empty_like(mine)
            work = dist.isend(mine, process, group=group)
            dist.recv(theirs, process, group=group)
            work.wait()
            p.grad = (mine + theirs).to(device)


def shape_message(tensor: torch.Tensor) -> torch.Tensor:
    """The first transfer on an edge: dtype, rank and shape of `tensor` as META_SIZE int64s."""
    meta = torch.zeros(META_SIZE, dtype=torch.int64)
    meta[0], meta[1] = WIRE_DTYPES.index(tensor.dtype), tensor.dim()
    meta[2:2 + tensor.dim()] = torch.tensor(tensor.shape, dtype=torch.int64)
    return meta


def read_shape_message(meta: torch.Tensor) -> tuple[tuple[int, ...], torch.dtype]:
    """(shape, dtype) from a `shape_message`."""
    ndim = int(meta[1])
    return tuple(int(x) for x in meta[2:2 + ndim]), WIRE_DTYPES[int(meta[0])]
