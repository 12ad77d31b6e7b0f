"""Verification: the checks every plan (and every hand-written order) must pass.

`verify_order` checks per-rank compute lists: every op exactly once and on its stage's rank,
overlapped pairs independent, no deadlock (a cycle through the rank orders and the DAG), memory
within the limit. `verify_plan` adds the communication: sends and receives pair up, each channel
between two ranks carries its transfers in the same order on both ends, every cross-rank
dependency goes through its transfer, and the happens-before graph (rank orders plus
send -> receive) has no cycle. Problems are data (`Problem`), located by (rank, index).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass

from .dag import Dag, find_cycle, independent, kahn_order, ops_of
from .ir import RECVS, SENDS, Instr, OpKind, Plan
from .memory import activation_steps
from .passes.lower import transfer
from .spec import PipelineSpec

Where = tuple[int, int]  # (rank, index in that rank's list)
MAX_PROBLEMS = 12


@dataclass(frozen=True, slots=True)
class Problem:
    """One failed check: what, where, and the other places involved."""

    check: str  # "coverage", "placement", "overlap", "deadlock", "memory", "comm", "dependency"
    message: str
    where: Where | None = None
    related: tuple[Where, ...] = ()


def _owner_map(spec: PipelineSpec, rows) -> tuple[dict[Instr, Where], list[Problem]]:
    """Where each DAG op runs; problems for ops run twice or on the wrong rank."""
    owner: dict[Instr, Where] = {}
    problems = []
    rank_of = spec.rank_of
    for rank, row in enumerate(rows):
        for index, instr in enumerate(row):
            for op in ops_of(instr, spec.split_backward):
                if rank_of(op.direction, op.stage) != rank:
                    problems.append(Problem("placement", f"{op} is on rank {rank}, but stage "
                                            f"{op.stage} lives on rank {rank_of(op.direction, op.stage)}",
                                            (rank, index)))
                if op in owner:
                    problems.append(Problem("coverage", f"{op} runs twice (first on rank "
                                            f"{owner[op][0]}, position {owner[op][1]})",
                                            (rank, index), (owner[op],)))
                else:
                    owner[op] = (rank, index)
    return owner, problems


def _check_coverage(spec: PipelineSpec, dag: Dag, owner: dict[Instr, Where]) -> list[Problem]:
    if len(owner) == len(dag.preds) and all(op in dag.preds for op in owner):
        return []
    problems = []
    for op in dag.preds:
        if op not in owner:
            home = spec.rank_of(op.direction, op.stage)
            problems.append(Problem("coverage", f"{op} never runs (it belongs on rank {home})",
                                    (home, -1)))
    for op, where in owner.items():
        if op not in dag:
            problems.append(Problem("coverage", f"{op} is not an op of this pipeline", where))
    return problems


def _check_overlaps(rows) -> list[Problem]:
    problems = []
    for rank, row in enumerate(rows):
        for index, instr in enumerate(row):
            if instr.kind is OpKind.OVERLAP and not independent(*instr.parts):
                problems.append(Problem("overlap", f"{instr} overlaps two ops of the same "
                                        "microbatch, and one needs the other", (rank, index)))
    return problems


def _check_memory(spec: PipelineSpec, rows) -> list[Problem]:
    if spec.memory_limit is None:
        return []
    problems = []
    for rank, row in enumerate(rows):
        for index, (during, _after) in enumerate(activation_steps(spec, row)):
            if during > spec.memory_limit:
                problems.append(Problem("memory", f"rank {rank} holds {during:g} activations here, "
                                        f"over the limit of {spec.memory_limit:g}", (rank, index)))
                break
    return problems


def _cycle_problem(spec, rows, nodes: list[Where], successors, stuck: list[int]) -> Problem:
    stuck_set = set(stuck)
    edges = [(u, v) for u in stuck for v in successors[u] if v in stuck_set]
    cycle = find_cycle(edges) or stuck[:1]
    cycle = cycle[::-1]  # print as "a waits for b waits for c"
    names = [f"{rows[nodes[i][0]][nodes[i][1]]} (rank {nodes[i][0]})" for i in cycle]
    ranks = sorted({nodes[i][0] for i in cycle})
    message = ("deadlock: these instructions wait on each other in a cycle: "
               + " waits for ".join(names + names[:1]) + f"; ranks involved: {ranks}")
    return Problem("deadlock", message, nodes[cycle[0]], tuple(nodes[i] for i in cycle[1:]))


def _deadlock(spec, rows, extra_edges) -> list[Problem]:
    """A cycle through the rank orders plus `extra_edges` (pairs of Where), if any."""
    nodes = [(r, i) for r, row in enumerate(rows) for i in range(len(row))]
    ids = {w: n for n, w in enumerate(nodes)}
    successors: list[list[int]] = [[] for _ in nodes]
    for n, (r, i) in enumerate(nodes):
        if i + 1 < len(rows[r]):
            successors[n].append(n + 1)
    for a, b in extra_edges:
        if a != b:
            successors[ids[a]].append(ids[b])
    _order, stuck = kahn_order(len(nodes), successors)
    return [_cycle_problem(spec, rows, nodes, successors, stuck)] if stuck else []


def verify_order(spec: PipelineSpec, dag: Dag, rows) -> list[Problem]:
    """Check per-rank compute lists (no communication) against the DAG; [] when all is well."""
    owner, problems = _owner_map(spec, rows)
    problems += _check_coverage(spec, dag, owner) + _check_overlaps(rows)
    if problems:
        return problems[:MAX_PROBLEMS]
    edges = [(owner[p], owner[c]) for p, c in dag.edges()]
    problems += _deadlock(spec, rows, edges) or _check_memory(spec, rows)
    return problems[:MAX_PROBLEMS]


def compute_rows(plan: Plan) -> tuple[tuple[tuple[Instr, ...], ...], list[list[int]]]:
    """The compute instructions of each rank, and their indices in the full list."""
    rows, index_maps = [], []
    for row in plan.ranks:
        kept = [(i, x) for i, x in enumerate(row) if x.is_compute]
        rows.append(tuple(x for _, x in kept))
        index_maps.append([i for i, _ in kept])
    return tuple(rows), index_maps


def verify_plan(spec: PipelineSpec, dag: Dag, plan: Plan) -> list[Problem]:
    """Check a whole plan, communication included; [] when all is well."""
    rows, index_maps = compute_rows(plan)
    owner, problems = _owner_map(spec, rows)
    problems += _check_coverage(spec, dag, owner) + _check_overlaps(rows)
    problems = [_remap(p, index_maps) for p in problems]
    if problems:
        return problems[:MAX_PROBLEMS]
    full_owner = {op: (r, index_maps[r][i]) for op, (r, i) in owner.items()}
    comm_problems, hb_edges = _check_comm(spec, dag, plan, full_owner)
    if comm_problems:
        return comm_problems[:MAX_PROBLEMS]
    problems = _deadlock(spec, plan.ranks, hb_edges) if not _runs_to_the_end(plan) else []
    if not problems:
        problems = [_remap(p, index_maps) for p in _check_memory(spec, rows)]
    return problems[:MAX_PROBLEMS]


def _runs_to_the_end(plan: Plan) -> bool:
    """Execute the plan abstractly: a SEND posts and goes on, a RECV waits for its SEND, a
    GRAD_SUM waits for its peer's. True when every rank reaches the end (no deadlock).
    Event-driven, so linear in the plan's length; a rank that waits is woken by the peer."""
    rows, pos = plan.ranks, [0] * len(plan.ranks)
    posted: set[tuple[int, Instr]] = set()  # (receiving rank, its RECV) whose SEND has run
    waiting: dict[object, int] = {}
    at_sum: set[int] = set()
    ready = list(range(len(rows)))
    while ready:
        rank = ready.pop()
        row = rows[rank]
        while pos[rank] < len(row):
            instr = row[pos[rank]]
            kind = instr.kind
            if kind in RECVS and (rank, instr) not in posted:
                waiting[(rank, instr)] = rank
                break
            if kind in SENDS:
                key = (instr.peer, _matching(instr, rank))
                posted.add(key)
                if key in waiting:
                    ready.append(waiting.pop(key))
            elif kind is OpKind.GRAD_SUM:
                at_sum.add(rank)
                if instr.peer not in at_sum:
                    waiting[("sum", rank)] = rank
                    break
                if ("sum", instr.peer) in waiting:
                    ready.append(waiting.pop(("sum", instr.peer)))
            pos[rank] += 1
    return all(p == len(row) for p, row in zip(pos, rows))


def _remap(problem: Problem, index_maps) -> Problem:
    def fix(w):
        return w if w is None or w[1] < 0 else (w[0], index_maps[w[0]][w[1]])
    return Problem(problem.check, problem.message, fix(problem.where),
                   tuple(fix(w) for w in problem.related))


def _comm_positions(spec: PipelineSpec, plan: Plan):
    """Every SEND/RECV/GRAD_SUM by its instruction, with the problems of malformed ones."""
    where: dict[Instr, Where] = {}
    problems = []
    channels: dict[tuple[int, int, str], list[tuple[Instr, Where]]] = defaultdict(list)
    for rank, row in enumerate(plan.ranks):
        for index, instr in enumerate(row):
            if instr.kind not in SENDS | RECVS | {OpKind.GRAD_SUM}:
                continue
            if (rank, instr) in where:
                problems.append(Problem("comm", f"{instr} appears twice on rank {rank}", (rank, index),
                                        (where[(rank, instr)],)))
            where[(rank, instr)] = (rank, index)
            if instr.kind is not OpKind.GRAD_SUM:
                problems += _check_comm_fields(spec, rank, index, instr)
                side = "send" if instr.kind in SENDS else "recv"
                pair = (rank, instr.peer) if side == "send" else (instr.peer, rank)
                channels[pair + (side,)].append((instr, (rank, index)))
    return where, channels, problems


# For each transfer kind: the kind at the other end, and where that end's stage is (+1 = next).
_MATE = {OpKind.SEND_F: OpKind.RECV_F, OpKind.RECV_F: OpKind.SEND_F,
         OpKind.SEND_B: OpKind.RECV_B, OpKind.RECV_B: OpKind.SEND_B}
_STEP = {OpKind.SEND_F: 1, OpKind.RECV_F: -1, OpKind.SEND_B: -1, OpKind.RECV_B: 1}


def _expected_peer(spec: PipelineSpec, instr: Instr) -> int | None:
    other = instr.stage + _STEP[instr.kind]
    if not 0 <= other < spec.num_stages:
        return None
    return spec.rank_of(instr.direction, other)


def _check_comm_fields(spec: PipelineSpec, rank: int, index: int, instr: Instr) -> list[Problem]:
    home = spec.rank_of(instr.direction, instr.stage)
    if home != rank:
        return [Problem("comm", f"{instr} is on rank {rank}, but stage {instr.stage} lives on rank "
                        f"{home}", (rank, index))]
    peer = _expected_peer(spec, instr)
    if peer is None:
        return [Problem("comm", f"{instr}: stage {instr.stage} has no neighbour in that direction",
                        (rank, index))]
    if peer != instr.peer:
        return [Problem("comm", f"{instr} names peer {instr.peer}, but the other end lives on rank "
                        f"{peer}", (rank, index))]
    if peer == rank:
        return [Problem("comm", f"{instr}: both ends are on rank {rank}; hand over locally, "
                        "without a send", (rank, index))]
    return []


def _matching(instr: Instr, rank: int) -> Instr:
    """The RECV that pairs with a SEND on `rank` (or the SEND that pairs with a RECV)."""
    return Instr(_MATE[instr.kind], instr.direction, instr.stage + _STEP[instr.kind],
                 instr.microbatch, rank)


def _check_comm(spec: PipelineSpec, dag: Dag, plan: Plan, owner: dict[Instr, Where]):
    """Pairing, channel order, dependencies through transfers, GRAD_SUM; and the
    happens-before edges (send -> receive, GRAD_SUM both ways) for the deadlock check."""
    where, channels, problems = _comm_positions(spec, plan)
    if problems:  # malformed transfers: the checks below would only repeat them
        return problems, []
    edges: list[tuple[Where, Where]] = []
    for (rank, instr), w in where.items():
        if instr.kind in SENDS:
            mate = where.get((instr.peer, _matching(instr, rank)))
            if mate is None:
                problems.append(Problem("comm", f"{instr} on rank {rank} has no matching "
                                        f"{_matching(instr, rank)} on rank {instr.peer}", w))
            else:
                edges.append((w, mate))
        elif instr.kind in RECVS and (instr.peer, _matching(instr, rank)) not in where:
            problems.append(Problem("comm", f"{instr} on rank {rank} waits for "
                                    f"{_matching(instr, rank)} on rank {instr.peer}, which never comes", w))
    problems += _check_channel_order(channels)
    problems += _check_transfers(spec, dag, owner, where)
    grad_problems, grad_edges = _check_grad_sums(spec, plan, where)
    return problems + grad_problems, edges + grad_edges


def _check_channel_order(channels) -> list[Problem]:
    problems = []
    for (src, dst, side), sends in channels.items():
        if side != "send":
            continue
        recvs = channels.get((src, dst, "recv"), [])
        sent = [_matching(s, src) for s, _ in sends]
        for k, (recv, w) in enumerate(recvs):
            if k < len(sent) and sent[k] != recv and recv in sent:
                problems.append(Problem("comm", f"rank {dst} receives {recv} as transfer {k} from "
                                        f"rank {src}, but rank {src} sends {sends[k][0]} there; both "
                                        "ends of a channel must keep one order", w, (sends[k][1],)))
                break
    return problems


def _check_transfers(spec: PipelineSpec, dag: Dag, owner, where) -> list[Problem]:
    """Local edges: producer first. Cross-rank edges: each has its SEND after the producer and its
    RECV before the consumer (SENDs are already known to be well-formed and paired, so counting
    them against the cross-rank edges shows none is missing)."""
    problems, cross_edges = [], 0
    for consumer, producers in dag.preds.items():
        c_where = owner[consumer]
        for producer in producers:
            p_where = owner[producer]
            if p_where[0] != c_where[0]:
                cross_edges += 1
            elif p_where[1] >= c_where[1] and p_where != c_where:
                problems.append(Problem("dependency", f"{consumer} runs before {producer}, "
                                        "which it needs", c_where, (p_where,)))
    sends = 0
    for (rank, instr), w in where.items():
        if instr.kind in SENDS:
            sends += 1
            producer = _endpoint_op(spec, instr)
            if owner[producer][1] > w[1]:
                problems.append(Problem("dependency", f"{instr} must come after {producer} on rank "
                                        f"{rank}", w, (owner[producer],)))
        elif instr.kind in RECVS:
            consumer = _endpoint_op(spec, instr)
            if owner[consumer][1] < w[1]:
                problems.append(Problem("dependency", f"{consumer} on rank {rank} needs {instr} "
                                        "before it", owner[consumer], (w,)))
    if sends != cross_edges:
        problems += _missing_transfers(spec, dag, owner, where)
    return problems[:MAX_PROBLEMS]


def _endpoint_op(spec: PipelineSpec, instr: Instr) -> Instr:
    """The compute op at this end of a transfer: the F or backward that a SEND carries the
    output of, or that a RECV feeds."""
    if instr.kind in (OpKind.SEND_F, OpKind.RECV_F):
        kind = OpKind.F
    else:
        kind = OpKind.I if spec.split_backward else OpKind.B
    return Instr(kind, instr.direction, instr.stage, instr.microbatch)


def _missing_transfers(spec: PipelineSpec, dag: Dag, owner, where) -> list[Problem]:
    problems = []
    for producer, consumer in dag.edges():
        p_where, c_where = owner[producer], owner[consumer]
        if p_where[0] == c_where[0]:
            continue
        send, recv = transfer(spec, producer, consumer)
        if (p_where[0], send) not in where:
            problems.append(Problem("dependency", f"{consumer} on rank {c_where[0]} needs the "
                                    f"output of {producer}, but rank {p_where[0]} never runs {send}",
                                    p_where))
        if len(problems) >= MAX_PROBLEMS:
            break
    return problems


def _check_grad_sums(spec: PipelineSpec, plan: Plan, where):
    sums = {rank: w for (rank, instr), w in where.items() if instr.kind is OpKind.GRAD_SUM}
    if spec.placement != "bidirectional":
        return [Problem("comm", "GRAD_SUM in a pipeline without replicas", w) for w in sums.values()], []
    problems, edges = [], []
    counts = Counter(rank for (rank, instr) in where if instr.kind is OpKind.GRAD_SUM)
    for rank in range(spec.ranks):
        mirror = spec.ranks - 1 - rank
        w = where.get((rank, Instr(OpKind.GRAD_SUM, peer=mirror)))
        if w is None or counts[rank] != 1:
            problems.append(Problem("comm", f"rank {rank} must end with one GRAD_SUM@{mirror} (the "
                                    "sum of its stage replicas' gradients)", sums.get(rank, (rank, -1))))
            continue
        if any(x.is_compute for x in plan.ranks[rank][w[1] + 1:]):
            problems.append(Problem("comm", f"GRAD_SUM@{mirror} on rank {rank} comes before some of "
                                    "its backward ops", w))
        mate = where.get((mirror, Instr(OpKind.GRAD_SUM, peer=rank)))
        if mate is not None and mate[1] > 0:
            edges.append(((mirror, mate[1] - 1), w))
    return problems, edges
