"""Closed forms of docs/schedules.md ("Families"): the bubble and peak memory each family should have.

Bubble = the largest idle time over the ranks, with full-stage costs (B = I + W). Two entries are
sharpened (docs/schedules.md explains): no linear or V schedule can beat (p-1)F, the time the last
rank waits for its first input, so ZB-H1 and ZB-H2 are floored there and ZB-V's "0 when F = I = W"
is (p-1)F. `exact` says whether the simulator must hit the value or only stay at or under it.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..lang.spec import PipelineSpec


@dataclass(frozen=True, slots=True)
class ClosedForm:
    bubble: float | None  # None: no closed form for these costs
    exact: bool  # True: the simulated bubble equals it; False: it is an upper bound
    formula: str
    peak: float | None  # peak activations on the busiest rank, in units of one stage's activation


def closed_form(spec: PipelineSpec) -> ClosedForm:
    """The closed form of `spec`'s family for its (uniform) costs; bubble None when stages differ."""
    if len(set(spec.costs)) != 1 or len(set(spec.activations)) != 1:
        return ClosedForm(None, False, "stages differ", None)
    c = spec.costs[0]
    F, B, W, FB = c.forward, c.backward, c.weight, c.overlap_cost
    p, m, v = spec.ranks, spec.microbatches, spec.chunks
    act = spec.activations[0]
    if c.comm:
        return ClosedForm(None, False, "comm > 0", None)
    family = spec.schedule
    if family == "gpipe":
        return ClosedForm((p - 1) * (F + B), True, "(p-1)(F+B)", m * act)
    if family == "1f1b":
        return ClosedForm((p - 1) * (F + B), True, "(p-1)(F+B)", min(p, m) * act)
    if family == "interleaved":
        # chunk costs: a rank's full stage is v chunks, so (p-1)(vF+vB)/v = (p-1)(F+B)
        return ClosedForm((p - 1) * (F + B), True, "(p-1)(F+B)/v, full-stage F, B",
                          min(v * p + p - 1, m * v) * act)
    if family == "zb-h1":
        return ClosedForm((p - 1) * max(F, F + B - 2 * W), True, "(p-1)max(F, F+B-2W)",
                          min(p, m) * act)
    if family == "zb-h2":
        return ClosedForm((p - 1) * max(F, F + B - 3 * W), m >= 2 * p - 1,
                          "(p-1)max(F, F+B-3W)", min(2 * p - 1, m) * act)
    if family == "zbv":
        equal = F == B - W == W
        return ClosedForm((p - 1) * F if equal else None, equal, "(p-1)F when F=I=W", 2 * p * act)
    if family in ("dualpipe", "dualpipev"):
        stages = p if family == "dualpipe" else 2 * p
        exact = F == W == B / 2 and FB == F + B
        return ClosedForm((stages / 2 - 1) * (FB + B - 3 * W), exact, "(PP/2-1)(F&B+B-3W)",
                          (stages + 1) * act)
    return ClosedForm(None, False, "-", None)


def parameter_copies(spec: PipelineSpec) -> float:
    """Parameters held per rank, as a multiple of (model / ranks): 2 for DualPipe's replicas."""
    return 2.0 if spec.placement == "bidirectional" else 1.0
