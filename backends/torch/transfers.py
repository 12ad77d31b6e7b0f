"""What the ranks rely on besides torch.distributed: the digest of the plan they all compare before
running (`plan_digest`), the proof from the plan alone of which sends a peer has certainly received
(`sends_received_before`), the give-back of a sent output's storage (`release_storage`), and the
metadata a first transfer carries (`WIRE_DTYPES`, `META_SIZE`).
"""

from __future__ import annotations

import hashlib

import torch

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
