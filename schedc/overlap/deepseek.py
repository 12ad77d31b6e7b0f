"""DeepSeek's order of a pair (DeepSeek-V3 technical report, section 3.2, Figure 4), for any parts.

Figure 4 shows, per layer of the forward chunk and of the backward chunk (block boundaries not
aligned), the compute lane issuing MLP(B) MLP(W) MLP(F) ATTN(B) ATTN(W) ATTN(F) and the
communication lane DISPATCH(F) DISPATCH(B) COMBINE(F) COMBINE(B): each all-to-all of one chunk runs
under a compute part of the other, and each W part right after its B part.

For parts in general: each chunk's parts in dependency order (the backward's W parts right after
their B part) are cut into phases, maximal runs of parts on one lane; the two chunks' phases are
then paired in lock step so that a compute phase of one meets a communication phase of the other.
When both chunks start on the same lane, the forward leads by one phase. The compute lane issues
the compute phases step by step, the communication lane the communication phases; when one chunk
runs out of phases, the other's remaining phases follow in order.
With DeepSeek-V3's parts (F: attention, dispatch, mlp, combine; B: combine, mlp, dispatch,
attention; W: mlp, attention) this gives exactly Figure 4's order, starting with the forward's
attention beside the backward's combine.
"""

from __future__ import annotations

from .chunk import COMM, COMPUTE, Chunk, PairProblem, build_problem


def _chain_with_weights(problem: PairProblem) -> list[int]:
    """The backward chunk's parts in dependency order, each W part right after its B part."""
    after: dict[int, list[int]] = {}
    for w in problem.weight:
        after.setdefault(problem.pred[w], []).append(w)
    out: list[int] = []
    for b in problem.backward:
        out += [b, *after.get(b, [])]
    return out


def phases(problem: PairProblem, parts: list[int]) -> list[tuple[int, list[int]]]:
    """(lane, part ids) of each maximal run of consecutive `parts` on one lane."""
    out: list[tuple[int, list[int]]] = []
    for i in parts:
        lane = problem.lane[i]
        if out and out[-1][0] == lane:
            out[-1][1].append(i)
        else:
            out.append((lane, [i]))
    return out


def deepseek_ids(problem: PairProblem) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """DeepSeek's lane orders (compute, communication) as part ids; see the module docstring."""
    forward = phases(problem, list(problem.forward))
    backward = phases(problem, _chain_with_weights(problem))
    lead = 1 if forward[0][0] == backward[0][0] else 0  # the forward leads by `lead` phases
    steps: list[list[tuple[int, list[int]]]] = []
    for k in range(max(len(forward), len(backward) + lead)):
        step = [forward[k]] if k < len(forward) else []
        if 0 <= k - lead < len(backward):
            step.append(backward[k - lead])
        steps.append(step)
    lanes: tuple[list[int], list[int]] = ([], [])
    for step in steps:
        for lane, ids in step:
            lanes[lane].extend(ids)
    return tuple(lanes[COMPUTE]), tuple(lanes[COMM])


def deepseek_order(chunk: Chunk) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """DeepSeek's order of issue for the pair of `chunk`: (compute lane, communication lane) as
    part labels such as `F0.attention`, `B3.combine`, `W3.mlp`."""
    problem = build_problem(chunk)
    compute, comm = deepseek_ids(problem)
    return tuple(problem.labels[i] for i in compute), tuple(problem.labels[i] for i in comm)
