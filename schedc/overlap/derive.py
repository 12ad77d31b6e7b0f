"""From a chunk's parts to the cost block's F, B, W and F&B: `derive_costs`."""

from __future__ import annotations

from dataclasses import dataclass

from .best import NODES_PER_SECOND, TOLERANCE, search_best
from .bound import lower_bound
from .chunk import COMM, COMPUTE, Chunk, build_problem, total
from .deepseek import deepseek_ids
from .pair import PairSchedule, schedule_of, sequential_order


@dataclass(frozen=True, slots=True)
class Derived:
    """A stage's costs derived from its chunk's parts.

    F: the forward parts summed over layers (a chunk alone is a chain: its communication exposed).
    B: the full backward, B parts plus W parts (what B means in every schedc cost block). W: the W
    parts. FB: the makespan of the best two-lane schedule of one forward and one backward chunk
    (`best`); without communication parts exactly F + B. hidden_comm: the fraction of the pair's
    communication time that runs under compute in `best`. deepseek: DeepSeek's order (deepseek.py)
    evaluated. proven: whether `best` is proven optimal (the exact search finished in its budget);
    lower_bound: a proven lower bound on F&B (FB itself when proven). compute / comm: the pair's
    compute and communication work (F + B = compute + comm). nodes: the states the search expanded.
    Note: FB can be below B. B counts a lone backward chunk, its communication exposed; the pair
    hides that communication under compute (DeepSeek-V3's parts at comm_share 0.15, 4 layers: FB
    132.85 < B 133.2). So max(F, B) <= F&B, which hand-written cost blocks keep, does not hold for
    derived costs; FB is never below F, the B parts' chain, max(compute, comm) or lower_bound."""

    F: float
    B: float
    W: float
    FB: float
    hidden_comm: float
    best: PairSchedule
    deepseek: PairSchedule
    proven: bool
    lower_bound: float
    compute: float
    comm: float
    nodes: int

    @property
    def deepseek_gap(self) -> float:
        """How much longer DeepSeek's order is than the best (0 when it is the best found)."""
        return max(0.0, self.deepseek.makespan - self.FB)

    @property
    def deepseek_optimal(self) -> bool:
        """Whether DeepSeek's order is proven optimal for these parts."""
        return self.proven and self.deepseek_gap <= TOLERANCE * max(1.0, self.FB)


def derive_costs(chunk: Chunk, budget_s: float = 0.5) -> Derived:
    """F, B, W and F&B of `chunk` (see `Derived`), F&B by the exact search (best.py) within
    `budget_s` seconds (counted in branch points, so the result is the same on every machine).
    Raises `SchedError` for a chunk that breaks the model's rules (chunk.check_chunk). Pure."""
    problem = build_problem(chunk)
    every = range(len(problem.work))
    forward = total(problem, problem.forward)
    weight = total(problem, problem.weight)
    backward = total(problem, problem.backward + problem.weight)
    compute, comm = total(problem, every, COMPUTE), total(problem, every, COMM)
    # the search starts from DeepSeek's order and the sequential pair; neither deadlocks: both
    # lanes' orders are subsequences of one dependency order of all parts, so the first part not
    # done in it always heads its lane, ready
    seeds = []
    for compute_ids, comm_ids in (deepseek_ids(problem), sequential_order(problem)):
        seeds.append((compute_ids, comm_ids, schedule_of(problem, compute_ids, comm_ids).makespan))
    deepseek = schedule_of(problem, *deepseek_ids(problem))
    bound = lower_bound(problem).value
    result = search_best(problem, seeds, max(1, int(budget_s * NODES_PER_SECOND)), bound)
    best = schedule_of(problem, result.compute, result.comm)
    proven = result.proven or best.makespan <= bound + TOLERANCE * max(1.0, bound)
    fb = forward + backward if comm == 0 else best.makespan  # one lane overlaps nothing: exact
    return Derived(forward, backward, weight, fb, best.hidden_comm, best, deepseek, proven,
                   fb if proven else min(max(bound, result.bound), fb), compute, comm, result.nodes)
