"""Verification of a plan's communication (used by `verify.verify_plan`).

The model: a SEND posts a non-blocking send and goes on; a RECV waits until its data has come;
between an ordered pair of ranks (a channel) the transfers arrive in the order they were sent, so
both ends must list them in the same order (as NCCL requires); GRAD_SUM is a rendezvous of a rank
with its mirror. `run_plan` executes the plan under this model, event-driven and so linear in
its length: it proves pairing, channel order and freedom from deadlock in one pass, and only on
failure builds the happens-before graph to name the cycle.
"""

from __future__ import annotations

from collections import Counter, deque

from ..dag import Dag
from ..ir import COMM, RECVS, SENDS, Instr, OpKind, Plan
from ..passes.lower import transfer
from ..lang.recompute import chosen_option
from ..lang.spec import PipelineSpec

Where = tuple[int, int]
MAX_PROBLEMS = 12

# For each transfer kind: the kind at the other end, and where that end's stage is (+1 = next).
_MATE = {OpKind.SEND_F: OpKind.RECV_F, OpKind.RECV_F: OpKind.SEND_F,
         OpKind.SEND_B: OpKind.RECV_B, OpKind.RECV_B: OpKind.SEND_B}
_STEP = {OpKind.SEND_F: 1, OpKind.RECV_F: -1, OpKind.SEND_B: -1, OpKind.RECV_B: 1}


def matching(instr: Instr, rank: int) -> Instr:
    """The RECV that pairs with a SEND on `rank` (or the SEND that pairs with a RECV)."""
    return Instr.transfer(_MATE[instr.kind], instr.direction, instr.stage + _STEP[instr.kind],
                          instr.microbatch, rank)


def comm_positions(spec: PipelineSpec, plan: Plan, problem) -> tuple[dict, list]:
    """Every SEND/RECV/GRAD_SUM keyed by (rank, instr), and the problems of malformed ones."""
    where: dict[tuple[int, Instr], Where] = {}
    problems = []
    homes = home_ranks(spec)
    malformed: dict[tuple, bool] = {}  # per (rank, kind, direction, stage, peer): _field_problem?
    for rank, row in enumerate(plan.ranks):
        for index, instr in enumerate(row):
            if instr.kind not in COMM:
                continue
            here = (rank, index)
            first = where.setdefault((rank, instr), here)
            if first is not here:
                problems.append(problem("comm", f"{instr} appears twice on rank {rank}", here, (first,)))
                where[(rank, instr)] = here
            if instr.kind is OpKind.GRAD_SUM:
                continue
            key = (rank, instr.kind, instr.direction, instr.stage, instr.peer)
            if key not in malformed:  # the fields decide, whatever the microbatch
                malformed[key] = _field_problem(spec, rank, instr, homes) is not None
            if malformed[key]:
                problems.append(problem("comm", _field_problem(spec, rank, instr, homes), here))
    return where, problems


def home_ranks(spec: PipelineSpec) -> dict[tuple[int, int], int]:
    """(direction, stage) -> the rank that holds it (`spec.rank_of`, looked up once per pass)."""
    return {(d, s): spec.rank_of(d, s) for d in range(spec.directions) for s in range(spec.num_stages)}


def check_pairing(where, problem) -> list:
    """Every SEND has its RECV on the peer and every RECV its SEND."""
    problems = []
    for (rank, instr), w in where.items():
        if instr.kind in SENDS or instr.kind in RECVS:
            mate = matching(instr, rank)
            if (instr.peer, mate) in where:
                continue
            if instr.kind in SENDS:
                message = f"{instr} on rank {rank} has no matching {mate} on rank {instr.peer}"
            else:
                message = f"{instr} on rank {rank} waits for {mate} on rank {instr.peer}, which never comes"
            problems.append(problem("comm", message, w))
            if len(problems) >= MAX_PROBLEMS:
                break
    return problems


def _field_problem(spec: PipelineSpec, rank: int, instr: Instr, homes) -> str | None:
    home = homes.get((instr.direction, instr.stage))
    if home is None:
        home = spec.rank_of(instr.direction, instr.stage)
    if home != rank:
        return f"{instr} is on rank {rank}, but stage {instr.stage} lives on rank {home}"
    other = instr.stage + _STEP[instr.kind]
    if not 0 <= other < spec.num_stages:
        return f"{instr}: stage {instr.stage} has no neighbour in that direction"
    peer = homes.get((instr.direction, other))
    if peer is None:
        peer = spec.rank_of(instr.direction, other)
    if peer != instr.peer:
        return f"{instr} names peer {instr.peer}, but the other end lives on rank {peer}"
    if peer == rank:
        return f"{instr}: both ends are on rank {rank}; hand over locally, without a send"
    return None


def run_plan(plan: Plan, problem) -> tuple[list, list[int], bool]:
    """Execute the plan under the communication model. Returns (channel-order problems, where
    each rank stopped, whether every channel was drained). When every rank reaches its end and
    every channel is drained, each SEND met exactly its RECV: pairing, channel order and freedom
    from deadlock are proven together."""
    rows, pos = plan.ranks, [0] * len(plan.ranks)
    channels: dict[tuple[int, int], deque] = {}  # (src, dst) -> the RECVs its sends will satisfy
    waiting: dict[object, int] = {}
    at_sum: set[int] = set()
    ready = list(range(len(rows)))
    while ready:
        rank = ready.pop()
        row = rows[rank]
        i, end = pos[rank], len(row)
        while i < end:  # `i`: this rank's position, stored back in `pos` when it stops
            instr = row[i]
            kind = instr.kind
            if kind not in COMM:  # compute: never waits in this model
                i += 1
                continue
            if kind in SENDS:
                key = (rank, instr.peer)
                channels.setdefault(key, deque()).append(matching(instr, rank))
                if key in waiting:
                    ready.append(waiting.pop(key))
            elif kind in RECVS:
                channel = channels.get((instr.peer, rank))
                if not channel:
                    waiting[(instr.peer, rank)] = rank
                    break
                if channel[0] != instr:
                    pos[rank] = i
                    return [_order_problem(plan, rank, i, instr, channel[0], problem)], pos, False
                channel.popleft()
            else:  # GRAD_SUM
                at_sum.add(rank)
                if instr.peer not in at_sum:
                    waiting[("sum", rank)] = rank
                    break
                if ("sum", instr.peer) in waiting:
                    ready.append(waiting.pop(("sum", instr.peer)))
            i += 1
        pos[rank] = i
    return [], pos, not any(channels.values())


def _order_problem(plan, rank, index, instr, expected, problem):
    src = instr.peer
    return problem("comm", f"rank {rank} receives {instr} next from rank {src}, but rank {src} "
                   f"sends the data for {expected} first; both ends of a channel must keep one "
                   "order", (rank, index))


def happens_before_edges(plan: Plan, where) -> list[tuple[Where, Where]]:
    """SEND -> its RECV, and into each GRAD_SUM from the instruction before its mirror's (for
    naming a deadlock's cycle; the rank orders are added by the caller)."""
    edges = []
    for (rank, instr), w in where.items():
        if instr.kind in SENDS:
            mate = where.get((instr.peer, matching(instr, rank)))
            if mate is not None:
                edges.append((w, mate))
        elif instr.kind is OpKind.GRAD_SUM:
            mate = where.get((instr.peer, Instr(OpKind.GRAD_SUM, peer=rank)))
            if mate is not None and mate[1] > 0:
                edges.append(((instr.peer, mate[1] - 1), w))
    return edges


def check_transfers(spec: PipelineSpec, dag: Dag, owner, where, problem) -> list:
    """Local edges: producer first. Cross-rank edges: each has its SEND after the producer and its
    RECV before the consumer (SENDs are known to be well-formed, so counting them against the
    cross-rank edges shows none is missing)."""
    problems, cross_edges = [], 0
    for consumer, producers in dag.preds.items():
        c_where = owner[consumer]
        for producer in producers:
            p_where = owner[producer]
            if p_where[0] != c_where[0]:
                cross_edges += 1
            elif p_where[1] >= c_where[1] and p_where != c_where:
                problems.append(problem("dependency", f"{consumer} runs before {producer}, "
                                        "which it needs", c_where, (p_where,)))
    sends, endpoint = 0, _endpoint_kinds(spec)
    for (rank, instr), w in where.items():
        if instr.kind in SENDS:
            sends += 1
            producer = Instr.compute(endpoint[instr.kind][instr.stage], instr.direction, instr.stage,
                                     instr.microbatch)
            if owner[producer][1] > w[1]:
                problems.append(problem("dependency", f"{instr} must come after {producer} on rank "
                                        f"{rank}", w, (owner[producer],)))
        elif instr.kind in RECVS:
            consumer = Instr.compute(endpoint[instr.kind][instr.stage], instr.direction, instr.stage,
                                     instr.microbatch)
            if owner[consumer][1] < w[1]:
                problems.append(problem("dependency", f"{consumer} on rank {rank} needs {instr} "
                                        "before it", owner[consumer], (w,)))
    if sends != cross_edges:
        problems += _missing_transfers(spec, dag, owner, where, problem)
    return problems[:MAX_PROBLEMS]


def _endpoint_kinds(spec: PipelineSpec) -> dict[OpKind, list[OpKind]]:
    """Per transfer kind, per stage: the kind of the compute op at this end of the transfer: the
    F or backward whose output a SEND carries, or that a RECV feeds."""
    backward = OpKind.I if spec.split_backward else OpKind.B
    stages = range(spec.num_stages)
    return {OpKind.SEND_F: [OpKind.F] * spec.num_stages, OpKind.RECV_F: [OpKind.F] * spec.num_stages,
            OpKind.SEND_B: [backward] * spec.num_stages,
            OpKind.RECV_B: [OpKind.R if chosen_option(spec, s) is not None else backward  # R: dag.py
                            for s in stages]}


def _missing_transfers(spec: PipelineSpec, dag: Dag, owner, where, problem) -> list:
    problems = []
    for producer, consumer in dag.edges():
        p_where, c_where = owner[producer], owner[consumer]
        if p_where[0] == c_where[0]:
            continue
        send, _recv = transfer(spec, producer, consumer)
        if (p_where[0], send) not in where:
            problems.append(problem("dependency", f"{consumer} on rank {c_where[0]} needs the "
                                    f"output of {producer}, but rank {p_where[0]} never runs {send}",
                                    p_where))
        if len(problems) >= MAX_PROBLEMS:
            break
    return problems


def check_grad_sums(spec: PipelineSpec, plan: Plan, where, problem) -> list:
    """A bidirectional plan ends each rank with one GRAD_SUM with its mirror; others have none."""
    found = [(rank, w) for (rank, instr), w in where.items() if instr.kind is OpKind.GRAD_SUM]
    sums = dict(found)
    if spec.placement != "bidirectional":
        return [problem("comm", "GRAD_SUM in a pipeline without replicas", w) for w in sums.values()]
    problems = []
    counts = Counter(rank for rank, _w in found)
    for rank in range(spec.ranks):
        mirror = spec.ranks - 1 - rank
        w = where.get((rank, Instr(OpKind.GRAD_SUM, peer=mirror)))
        if w is None or counts[rank] != 1:
            problems.append(problem("comm", f"rank {rank} must end with one GRAD_SUM@{mirror} (the "
                                    "sum of its stage replicas' gradients)", sums.get(rank, (rank, -1))))
        elif any(x.is_compute for x in plan.ranks[rank][w[1] + 1:]):
            problems.append(problem("comm", f"GRAD_SUM@{mirror} on rank {rank} comes before some "
                                    "of its backward ops", w))
    return problems
