"""Verification: the checks every plan (and every hand-written order) must pass.

`verify_order` checks per-rank compute lists: every op exactly once and on its stage's rank,
overlapped pairs independent, no deadlock (a cycle through the rank orders and the DAG), memory
within the limit. `verify_plan` adds the communication (comm.py): sends and receives are
well-formed and pair up, each channel between two ranks carries its transfers in the same order
on both ends, every cross-rank dependency goes through its transfer, and the plan runs to the end
(a deadlock is reported as its cycle). Problems are data (`Problem`), located by (rank, index).
"""

from __future__ import annotations

from dataclasses import dataclass

from . import comm
from ..dag import Dag, find_cycle, independent, kahn_order, ops_of
from ..ir import COMM, Instr, OpKind, Plan
from .memory import activation_steps
from ..lang.spec import PipelineSpec

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
    homes = comm.home_ranks(spec)
    split, rank_of = spec.split_backward, spec.rank_of
    for rank, row in enumerate(rows):
        for index, instr in enumerate(row):
            where = (rank, index)
            for op in ops_of(instr, split):
                home = homes.get((op.direction, op.stage))
                if home is None:  # a stage out of range (the coverage check names it)
                    home = rank_of(op.direction, op.stage)
                if home != rank:
                    problems.append(Problem("placement", f"{op} is on rank {rank}, but stage "
                                            f"{op.stage} lives on rank {rank_of(op.direction, op.stage)}",
                                            where))
                first = owner.setdefault(op, where)
                if first is not where:
                    problems.append(Problem("coverage", f"{op} runs twice (first on rank "
                                            f"{first[0]}, position {first[1]})", where, (first,)))
    return owner, problems


def _check_coverage(spec: PipelineSpec, dag: Dag, owner: dict[Instr, Where]) -> list[Problem]:
    if owner.keys() == dag.preds.keys():  # compared as sets, in C
        return []
    problems = []
    missing: dict[int, list[Instr]] = {}  # home rank -> its ops that no list runs, in DAG order
    for op in dag.preds:
        if op not in owner:
            missing.setdefault(spec.rank_of(op.direction, op.stage), []).append(op)
    for home, ops in sorted(missing.items()):
        problems.append(Problem("coverage", _never_run(ops, home), (home, -1)))
    for op, where in owner.items():
        if op not in dag:
            problems.append(Problem("coverage", f"{op} is not an op of this pipeline", where))
    return problems


def _never_run(ops: list[Instr], home: int, shown: int = 8) -> str:
    """One rank's missing ops as one message: all of them up to `shown`, then how many more."""
    if len(ops) == 1:
        return f"{ops[0]} never runs (it belongs on rank {home})"
    names = " ".join(str(op) for op in ops[:shown])
    more = f" and {len(ops) - shown} more" if len(ops) > shown else ""
    return f"{len(ops)} ops never run: {names}{more} (they belong on rank {home})"


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
        for index, (during, _after) in enumerate(activation_steps(spec, row, rank)):
            if during > spec.memory_limit:
                problems.append(Problem("memory", f"rank {rank} holds {during:g} {_what(spec)} here, "
                                        f"over the limit of {spec.memory_limit:g}", (rank, index)))
                break
    return problems


def _what(spec: PipelineSpec) -> str:
    """How a memory figure is named: activations, or memory once parameters count."""
    return "units of memory" if spec.parameters and any(spec.parameters) else "activations"


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
        kept = [(i, x) for i, x in enumerate(row) if x.kind not in COMM]
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
    where, problems = comm.comm_positions(spec, plan, Problem)
    if problems:  # malformed transfers: the checks below would only repeat them
        return problems[:MAX_PROBLEMS]
    problems = (comm.check_transfers(spec, dag, full_owner, where, Problem)
                + comm.check_grad_sums(spec, plan, where, Problem))
    if problems:
        return problems[:MAX_PROBLEMS]
    order_problems, stopped, drained = comm.run_plan(plan, Problem)
    finished = all(p == len(row) for p, row in zip(stopped, plan.ranks))
    if not (finished and drained and not order_problems):  # explain: pairing, order, deadlock
        problems = (comm.check_pairing(where, Problem) or order_problems
                    or _deadlock(spec, plan.ranks, comm.happens_before_edges(plan, where)))
    if not problems:
        problems = [_remap(p, index_maps) for p in _check_memory(spec, rows)]
    return problems[:MAX_PROBLEMS]


def _remap(problem: Problem, index_maps) -> Problem:
    def fix(w):
        return w if w is None or w[1] < 0 else (w[0], index_maps[w[0]][w[1]])
    return Problem(problem.check, problem.message, fix(problem.where),
                   tuple(fix(w) for w in problem.related))
