"""The min-max bottleneck split, exactly, by dynamic programming (PipeDream's formula, with
unequal device speeds in a fixed order, a per-position feasibility test, pins and a minimum
number of layers per stage).

`value(s, i, j)` is what stage s costs holding layers i .. j-1 (its time at its rank's speed, or
its memory); `allowed(s, i, j)` says whether it may (a memory cap that depends on the stage's
position in the schedule). `suffix_table` gives, for every (s, i), the least possible largest
value when layers i .. L-1 fill stages s .. S-1: the optimum is `table[0][0]`, and the search
over simulated splits uses the table as a lower bound. `lexmin_split` returns, among the optimal
splits, the one with the lexicographically smallest bounds: ties are broken deterministically.

Invariant checked by tests/test_partition_exact.py: on small random instances, `table[0][0]`
equals the brute-force minimum over all splits, and `lexmin_split` equals the first optimal
split in lexicographic order.
"""

from __future__ import annotations

from itertools import accumulate
from typing import Callable, Sequence

INF = float("inf")
Value = Callable[[int, int, int], float]
Allowed = Callable[[int, int, int], bool]
_TOL = 1e-9


def _close_or_below(x: float, limit: float) -> bool:
    return x <= limit + _TOL * max(1.0, abs(limit))


def pin_breaks(num_layers: int, pins: Sequence[int]) -> list[int]:
    """For each i: the first pin after i (a stage starting at i must end at or before it)."""
    nxt, pinned = [num_layers] * (num_layers + 1), set(pins)
    for i in range(num_layers - 1, -1, -1):
        nxt[i] = i + 1 if i + 1 in pinned else nxt[i + 1]
    return nxt


def _ends(num_layers: int, stages: int, s: int, i: int, min_layers: int, breaks: list[int]):
    """The ends j a stage s starting at layer i may have, leaving enough layers for the rest."""
    last = num_layers - min_layers * (stages - s - 1)
    if s < stages - 1:
        last = min(last, breaks[i])
    elif breaks[i] < num_layers:
        return range(0)  # the last stage would swallow a pin
    return range(i + min_layers, last + 1)


def suffix_table(num_layers: int, stages: int, value: Value, allowed: Allowed | None = None,
                 min_layers: int = 1, pins: Sequence[int] = (),
                 carry: Value | None = None) -> list[list[float]]:
    """table[s][i]: the least largest `value` over splits of layers i.. into stages s..S-1
    (INF: no split). Shape [stages + 1][num_layers + 1]; O(stages x layers^2) calls.

    With `carry`, the recurrence is min over j of max(value(s, i, j), carry(s, i, j) +
    table[s+1][j]): the largest over later stages of the carries up to them plus their value
    (a pipeline's fill time before its slowest stage)."""
    breaks = pin_breaks(num_layers, pins)
    table = [[INF] * (num_layers + 1) for _ in range(stages + 1)]
    table[stages][num_layers] = 0.0
    for s in range(stages - 1, -1, -1):
        for i in range(num_layers):
            best = INF
            for j in _ends(num_layers, stages, s, i, min_layers, breaks):
                rest = table[s + 1][j] + (carry(s, i, j) if carry is not None else 0.0)
                if rest >= best or (allowed is not None and not allowed(s, i, j)):
                    continue
                best = min(best, max(value(s, i, j), rest))
            table[s][i] = best
    return table


def lexmin_split(table: list[list[float]], num_layers: int, value: Value, allowed: Allowed | None = None,
                 min_layers: int = 1, pins: Sequence[int] = ()) -> tuple[int, ...] | None:
    """The optimal split with the lexicographically smallest bounds (None: no split)."""
    stages, target = len(table) - 1, table[0][0]
    if target == INF:
        return None
    breaks, bounds, i = pin_breaks(num_layers, pins), [0], 0
    for s in range(stages):
        for j in _ends(num_layers, stages, s, i, min_layers, breaks):
            if allowed is not None and not allowed(s, i, j):
                continue
            if _close_or_below(value(s, i, j), target) and _close_or_below(table[s + 1][j], target):
                bounds.append(j)
                i = j
                break
        else:
            raise AssertionError("suffix table and split disagree")
    return tuple(bounds)


def prefix_sums(values: Sequence[float]) -> list[float]:
    """[0, v0, v0+v1, ...]: the sum of layers i..j-1 is P[j] - P[i]."""
    return [0.0, *accumulate(values)]


def minmax_split(weights: Sequence[float], stages: int, speeds: Sequence[float] | None = None,
                 allowed: Allowed | None = None, min_layers: int = 1,
                 pins: Sequence[int] = ()) -> tuple[float, tuple[int, ...] | None]:
    """The least slowest stage (weights summed, divided by the stage's speed) and its split."""
    prefix, speeds = prefix_sums(weights), speeds or [1.0] * stages

    def value(s: int, i: int, j: int) -> float:
        return (prefix[j] - prefix[i]) / speeds[s]

    table = suffix_table(len(weights), stages, value, allowed, min_layers, pins)
    return table[0][0], lexmin_split(table, len(weights), value, allowed, min_layers, pins)
