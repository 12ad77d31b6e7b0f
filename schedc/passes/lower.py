"""lower_comm: insert the sends and receives that cross-rank dependencies need.

The communication model (what `verify` checks and a runtime must honour): a SEND posts a
non-blocking send and returns; a RECV waits until the matching data has arrived. Between two
ranks, the sends of one and the receives of the other come in the same order (one FIFO channel
per ordered pair of ranks), as NCCL requires.
"""

from __future__ import annotations

from collections import defaultdict

from ..dag import Dag, ops_of
from ..ir import Instr, OpKind, Plan
from ..lang.spec import PipelineSpec


def transfer(spec: PipelineSpec, producer: Instr, consumer: Instr) -> tuple[Instr, Instr]:
    """The (SEND, RECV) pair that carries `producer`'s output to `consumer` on another rank."""
    src = spec.rank_of(producer.direction, producer.stage)
    dst = spec.rank_of(consumer.direction, consumer.stage)
    recv, send, _made_at = _pair(producer, consumer, (src, -1), dst)
    return send, recv


def _owners(spec: PipelineSpec, rows) -> dict[Instr, tuple[int, int]]:
    """(rank, index) of the instruction that runs each DAG op."""
    return {op: (rank, index) for rank, row in enumerate(rows) for index, instr in enumerate(row)
            for op in ops_of(instr, spec.split_backward)}


def _receives(spec, dag, rows, owner):
    """For each rank and instruction index: the (recv, send, producer's place) triples it needs first
    (what `transfer` makes, built here without its rank look-ups: this is the pass's hot loop)."""
    split, predecessors = spec.split_backward, dag.preds
    needed = []
    for rank, row in enumerate(rows):
        before = {}
        for index, instr in enumerate(row):
            pairs = []
            for consumer in ops_of(instr, split):
                for producer in predecessors[consumer]:
                    made_at = owner[producer]
                    if made_at[0] != rank:
                        pairs.append(_pair(producer, consumer, made_at, rank))
            if pairs:  # in op order, then dependency order: deterministic, no sort needed
                before[index] = pairs
        needed.append(before)
    return needed


def _pair(producer: Instr, consumer: Instr, made_at: tuple[int, int], dst: int):
    """(recv, send, (rank, index) of the producer): `transfer(spec, producer, consumer)`
    reversed, the ranks known."""
    d, j, src, make = producer.direction, producer.microbatch, made_at[0], Instr.transfer
    forward = producer.kind is OpKind.F
    recv, send = (OpKind.RECV_F, OpKind.SEND_F) if forward else (OpKind.RECV_B, OpKind.SEND_B)
    return make(recv, d, consumer.stage, j, src), make(send, d, producer.stage, j, dst), made_at


def _send_slots(rows, needed):
    """Where each send goes: after its producer, and after the send before it on the same
    channel, so both peers see the channel's transfers in the receiver's order."""
    after = [defaultdict(list) for _ in rows]
    last_slot: dict[tuple[int, int], int] = {}
    for dst, before in enumerate(needed):
        for index in sorted(before):
            for _recv, send, (src, produced_at) in before[index]:
                slot = max(produced_at, last_slot.get((src, dst), -1))
                last_slot[(src, dst)] = slot
                after[src][slot].append(send)
    return after


def lower_comm(spec: PipelineSpec, dag: Dag, rows: tuple[tuple[Instr, ...], ...]) -> Plan:
    """The plan: each rank's compute instructions with RECVs right before the instruction that
    needs the data and SENDs right after the one that makes it (later only to keep a channel in
    order); a bidirectional pipeline ends each rank with GRAD_SUM with its mirror rank.

    Needs: `rows` hold only compute instructions (F, B, I, W, R, OVERLAP). A recomputing stage's
    incoming gradient feeds its R (dag.py), so its RECV_B comes right before the R, which comes
    right before the backward (passes/recompute.py). Guarantees: when the
    compute order is deadlock-free, so is the plan under the model above. Does not change `rows`.
    """
    owner = _owners(spec, rows)
    needed = _receives(spec, dag, rows, owner)
    after = _send_slots(rows, needed)
    plan = []
    for rank, row in enumerate(rows):
        out = []
        for index, instr in enumerate(row):
            out += [recv for recv, _send, _made_at in needed[rank].get(index, ())]
            out.append(instr)
            out += after[rank].get(index, ())
        if spec.placement == "bidirectional":
            out.append(Instr(OpKind.GRAD_SUM, peer=spec.ranks - 1 - rank))
        plan.append(tuple(out))
    return Plan(tuple(plan))
