"""The check against a measured pair (issue 20): given per-part durations taken from a trace of an
overlapped forward-backward pair (each part's time alone) and the span the trace measured for the
whole pair, is the derived F&B within 10% of that span, while the two naive figures, sequential
F + B and max(compute, comm), are more than 10% off?
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import Diagnostic, SchedError
from .chunk import Chunk
from .derive import Derived, derive_costs

TOLERANCE = 0.10


@dataclass(frozen=True, slots=True)
class MeasuredCheck:
    """The derived F&B and the two naive figures beside the measured span, each with its relative
    error (|figure - measured| / measured). `derived_close`: the derived F&B within `tolerance`;
    `naive_off`: both naive figures further than `tolerance`; `passed`: both."""

    measured: float
    derived: float
    sequential: float
    lanes: float
    derived_error: float
    sequential_error: float
    lanes_error: float
    tolerance: float
    costs: Derived

    @property
    def derived_close(self) -> bool:
        return self.derived_error <= self.tolerance

    @property
    def naive_off(self) -> bool:
        return self.sequential_error > self.tolerance and self.lanes_error > self.tolerance

    @property
    def passed(self) -> bool:
        return self.derived_close and self.naive_off


def check_measured(chunk: Chunk, measured_span: float, tolerance: float = TOLERANCE,
                   budget_s: float = 0.5) -> MeasuredCheck:
    """Compare `chunk`'s derived F&B (its parts: durations from the trace) with `measured_span`,
    the trace's span of the overlapped pair. Raises `SchedError` for a span that is not > 0."""
    if not measured_span > 0:
        raise SchedError([Diagnostic(f"the measured span {measured_span!r} must be > 0")])
    costs = derive_costs(chunk, budget_s)
    sequential = costs.F + costs.B
    lanes = max(costs.compute, costs.comm)

    def error(x: float) -> float:
        return abs(x - measured_span) / measured_span

    return MeasuredCheck(measured_span, costs.FB, sequential, lanes, error(costs.FB), error(sequential),
                         error(lanes), tolerance, costs)
