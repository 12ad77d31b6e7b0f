"""The fast evaluator: the makespan of fixed per-rank orders on the integer `Problem`.

It computes what `schedc.simulate` computes (each instruction starts when its rank is free and its
inputs have arrived, comm included; an overlapped pair costs `Problem.pair_cost`) with the same
float operations, so the two agree exactly on every plan the search returns (a test says so). It
also checks the memory limit along each rank's order (the model of `schedc.check.memory`).
"""

from __future__ import annotations

from .problem import F, Problem

EPS = 1e-9


def evaluate_rows(prob: Problem, rows: list[list[tuple[int, ...]]]) -> float | None:
    """The makespan of `rows` (per rank: instructions as tuples of op ids); None when the orders
    deadlock or a rank goes over the memory limit. Needs every op exactly once, on its rank."""
    if not _within_memory(prob, rows):
        return None
    end = [0.0] * prob.n
    done = [False] * prob.n
    position = [0] * len(rows)
    free_at = [0.0] * len(rows)
    left, makespan = sum(len(row) for row in rows), 0.0
    while left:
        progressed = False
        for r, row in enumerate(rows):
            while position[r] < len(row):
                instr = row[position[r]]
                start = free_at[r]
                blocked = False
                for o in instr:
                    for q, delay in prob.preds[o]:
                        if q in instr:
                            continue
                        if not done[q]:
                            blocked = True
                            break
                        if end[q] + delay > start:
                            start = end[q] + delay
                    if blocked:
                        break
                if blocked:
                    break
                finish = start + (prob.dur[instr[0]] if len(instr) == 1 else prob.pair_cost(*instr))
                for o in instr:
                    end[o], done[o] = finish, True
                free_at[r] = finish
                makespan = finish if finish > makespan else makespan
                position[r] += 1
                left -= 1
                progressed = True
        if not progressed:
            return None
    return makespan


def start_times(prob: Problem, rows: list[list[tuple[int, ...]]]) -> list[float]:
    """Each op's start under the fixed orders `rows` (as `evaluate_rows` runs them; an overlapped
    pair's two ops start together). Needs orders that do not deadlock."""
    begin, end = [0.0] * prob.n, [0.0] * prob.n
    done = [False] * prob.n
    position, free_at = [0] * len(rows), [0.0] * len(rows)
    left = sum(len(row) for row in rows)
    while left:
        for r, row in enumerate(rows):
            while position[r] < len(row):
                instr = row[position[r]]
                inputs = [(q, d) for o in instr for q, d in prob.preds[o] if q not in instr]
                if not all(done[q] for q, _d in inputs):
                    break
                t = max([free_at[r]] + [end[q] + d for q, d in inputs])
                cost = prob.dur[instr[0]] if len(instr) == 1 else prob.pair_cost(*instr)
                for o in instr:
                    begin[o], end[o], done[o] = t, t + cost, True
                free_at[r] = t + cost
                position[r] += 1
                left -= 1
    return begin


def _within_memory(prob: Problem, rows) -> bool:
    limit = prob.limit + EPS
    for r, row in enumerate(rows):
        held = prob.base[r]
        for instr in row:
            for o in instr:
                if prob.kind[o] == F:
                    held += prob.alloc[o]
            if held > limit:
                return False
            for o in instr:
                held -= prob.free[o]
    return True
