"""fuse_overlap: turn the family's chosen (forward, backward) pairs into OVERLAP instructions."""

from __future__ import annotations

from ..dag import independent
from ..ir import ComputeOrder, Instr


def fuse_overlap(order: ComputeOrder, enabled: bool) -> tuple[tuple[Instr, ...], ...]:
    """Per-rank compute instruction lists.

    Needs: `order.pairs` hold (forward, backward) ops that stand next to each other, forward
    first, on one rank. Guarantees: with `enabled`, each such pair whose ops are independent
    becomes one `OVERLAP(F, B)` at the forward's place; every other op is kept as it was, in
    order. Without `enabled` the order is returned unchanged. Does not change `order`.
    """
    if not enabled or not order.pairs:
        return order.ranks
    return tuple(_fuse_row(row, order.pairs) for row in order.ranks)


def _fuse_row(row: tuple[Instr, ...], pairs: frozenset[tuple[Instr, Instr]]) -> tuple[Instr, ...]:
    out: list[Instr] = []
    i = 0
    while i < len(row):
        if i + 1 < len(row) and (row[i], row[i + 1]) in pairs and independent(row[i], row[i + 1]):
            out.append(Instr.overlap(row[i], row[i + 1]))
            i += 2
            continue
        out.append(row[i])
        i += 1
    return tuple(out)
