"""Schedule families: each turns a `PipelineSpec` into a per-rank compute order.

`check_family(spec)` raises a located `SchedError` when the pipeline breaks the family's
constraints; `build_order(spec)` returns the family's `ComputeOrder` (or the hand-written one).
closed_forms.py gives each family's bubble as a formula.

May import the ground floor (errors, ir, dag) and lang/. Must not import check/, passes/, the
compiler, simulate or anything above them: a family proposes an order, the compiler proves it.

May import: errors, ir, dag, gcpause, lang
Libraries at module level: none
"""

from __future__ import annotations

from typing import Callable

from ..ir import ComputeOrder
from ..lang.spec import PipelineSpec
from . import dualpipe, interleaved, linear, zbv

_FAMILIES: dict[str, tuple[Callable[[PipelineSpec], None], Callable[[PipelineSpec], ComputeOrder]]] = {
    "gpipe": (linear.check, linear.build_gpipe),
    "1f1b": (linear.check, linear.build_1f1b),
    "zb-h1": (linear.check, linear.build_zb_h1),
    "zb-h2": (linear.check, linear.build_zb_h2),
    "interleaved": (interleaved.check, interleaved.build),
    "zbv": (zbv.check, zbv.build),
    "dualpipe": (dualpipe.check, dualpipe.build),
    "dualpipev": (dualpipe.check, dualpipe.build),
}


def check_family(spec: PipelineSpec) -> None:
    """Raise a located error if `spec` breaks its family's constraints (manual: nothing to check)."""
    if spec.schedule in _FAMILIES:
        _FAMILIES[spec.schedule][0](spec)


def build_order(spec: PipelineSpec) -> ComputeOrder:
    """The compute order of `spec`: its family's, or its hand-written one (`schedule = manual`)."""
    if spec.order is not None:
        return ComputeOrder(spec.order)
    check_family(spec)
    return _FAMILIES[spec.schedule][1](spec)
