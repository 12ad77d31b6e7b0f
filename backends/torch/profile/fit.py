"""Fit the block's transfer delay to the calibration run's whole step (`schedc run --profile`).

Why: the calibrated block (`calibrate.py`) has each op's time from a run, but a run loses time the
ops do not show. On a CPU with more ranks than cores (4 ranks on 2 cores) a rank that receives
waits until the OS schedules it again, and its sender's core is shared with a third rank: on the
2-core machine this was built on a 4-rank 1F1B step of 0.3-0.9 ms ops measured 30-50 ms while the
ranks were busy 7-9 ms of it, and the block's simulated step (transfers at the probe's 0.1 ms) was
a half to a third of the measured one. That time sits between a send and its receive, so the
simulator's place for it is the transfer delay `comm`.

`fit_comm` finds the one delay `extra` (ms, added to every stage's comm, a comm never below 0)
with which the block's simulated step of the plan the calibration ran equals that run's measured
step (the median of its steps after the first). The simulated step only grows with comm, so a
bisection finds it. A run faster than the block with no transfer delay at all keeps comm at 0.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ....simulate import simulate

ITERATIONS = 40  # bisection steps: the interval shrinks 2^40-fold


@dataclass(frozen=True)
class CommFit:
    """The fitted delay: `extra` ms added to each stage's comm (clamped at 0), the simulated step
    before (`unfitted_ms`) and after (`fitted_ms`), and the run's step it was fitted to."""

    extra: float
    unfitted_ms: float
    fitted_ms: float
    step_ms: float

    def comm(self, comm: float) -> float:
        """A stage's fitted comm from its calibrated one."""
        return max(comm + self.extra, 0.0)


def _makespan(compiled, extra: float) -> float:
    """The simulated step of `compiled`'s plan with `extra` added to every stage's comm."""
    spec = compiled.spec
    costs = tuple(dataclasses.replace(c, comm=max(c.comm + extra, 0.0)) for c in spec.costs)
    return simulate(dataclasses.replace(spec, costs=costs), compiled.dag, compiled.plan).makespan


def fit_comm(compiled, step_ms: float) -> CommFit:
    """The delay (`CommFit`) that makes `compiled`'s simulated step (its spec holds the calibrated
    costs, its plan the one the calibration ran) equal `step_ms`, the run's measured step."""
    unfitted = _makespan(compiled, 0.0)
    if _makespan(compiled, step_ms + 1.0) == unfitted:  # no transfer between ranks: nothing to fit
        return CommFit(0.0, unfitted, unfitted, step_ms)
    low = -max((c.comm for c in compiled.spec.costs), default=0.0)  # every comm at 0
    high = max(step_ms, 0.0)  # one such delay on any cross-rank edge already makes the step longer
    if _makespan(compiled, low) >= step_ms or _makespan(compiled, high) <= step_ms:
        extra = low if _makespan(compiled, low) >= step_ms else high
        return CommFit(extra, unfitted, _makespan(compiled, extra), step_ms)
    for _ in range(ITERATIONS):
        middle = (low + high) / 2
        if _makespan(compiled, middle) < step_ms:
            low = middle
        else:
            high = middle
    return CommFit(high, unfitted, _makespan(compiled, high), step_ms)


def format_fit(fit: CommFit) -> str:
    """The fit as a `#` comment line of the printed block."""
    return (f"# comm fitted to the calibration run's step: the run measured {fit.step_ms:.4g} ms a step, the "
            f"calibrated ops with the measured comm simulate {fit.unfitted_ms:.4g} ms; each transfer's delay "
            f"{fit.extra:+.4g} ms (comm never below 0) simulates {fit.fitted_ms:.4g} ms (time lost between a send "
            "and its receive: on a CPU with more ranks than cores, the receiver waiting for a core)")
