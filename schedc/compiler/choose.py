"""Choosing among variants of one pipeline: `schedule = auto` and `placement = any`.

Each variant is the same model (`recut.py`: the file's stages re-cut) compiled through the one
flow (flow.py); the shortest simulated step wins, ties going to the earlier variant.
"""

from __future__ import annotations

from dataclasses import replace

from ..errors import Diagnostic, Note, SchedError
from ..lang.spec import FAMILIES, PipelineSpec
from ..simulate import simulate
from .flow import Compiled, compile_spec
from .recut import with_family, with_placement

AUTO_SEARCH_TIME = 0.5  # seconds of search `auto` spends unless the file sets search_time
AUTO_SEARCH_MAX_OPS = 20_000  # above this, `auto` searches only when the file sets search_time


def shortest(variants) -> tuple[Compiled | None, float | None, list[str]]:
    """Compile each (label, make spec) and keep the shortest simulated step (ties: the first);
    the reasons the others failed, each as `label: message`."""
    best, best_time, reasons = None, None, []
    for label, make in variants:
        try:
            compiled = compile_spec(make())
        except SchedError as error:
            why = error.diagnostics[0].message if error.diagnostics else "no plan found"
            reasons.append(f"{label}: {why}")
            continue
        makespan = simulate(compiled.spec, compiled.dag, compiled.plan).makespan
        if best_time is None or makespan < best_time - 1e-9:
            best, best_time = compiled, makespan
        if _interrupted(compiled):  # Ctrl-C in its search: no more variants
            return _stop_at(compiled, best), best_time, reasons
    return best, best_time, reasons


def _interrupted(compiled: Compiled) -> bool:
    return bool(getattr(compiled.search, "interrupted", False))


def _stop_at(interrupted: Compiled, best: Compiled) -> Compiled:
    """After Ctrl-C: the interrupted search's plan when it is the best (it says it was
    interrupted); else the Ctrl-C goes on up, as it would have without a search running."""
    if best is not interrupted:
        raise KeyboardInterrupt
    return best


def compile_auto(spec: PipelineSpec) -> Compiled:
    """`schedule = auto`: compile every family that fits the pipeline (and its memory limit),
    each running the same model (`with_family`'s same_model), keep the one with the shortest
    simulated step (ties: the earlier family in FAMILIES), then let the search (seeded with the
    families) try to beat it on that family's placement, within AUTO_SEARCH_TIME unless the file
    sets `search_time`."""
    best, best_time, reasons = shortest((family, lambda f=family: with_family(spec, f))
                                        for family in FAMILIES)
    if best is None:
        raise SchedError([Diagnostic("schedule = auto: no family fits this pipeline",
                                     spec.source.span("schedule") or spec.source.pipeline,
                                     tuple(Note(r) for r in reasons))])
    return _searched(spec, best, best_time)


def _searched(spec: PipelineSpec, best: Compiled, best_time: float) -> Compiled:
    budget = spec.search_time if spec.source.span("search_time") else AUTO_SEARCH_TIME
    ops = sum(len(row) for row in best.order.ranks)
    if ops > AUTO_SEARCH_MAX_OPS and not spec.source.span("search_time"):
        return best  # a large pipeline: the families only, unless the file asks for a search
    try:
        searching = replace(with_family(spec, "search"), search_time=budget,
                            placements=(best.spec.placement,))
        found = compile_spec(searching)
    except SchedError:
        return best
    makespan = simulate(found.spec, found.dag, found.plan).makespan
    better = found if makespan < best_time - 1e-9 else best
    return _stop_at(found, better) if _interrupted(found) else better


def compile_best_placement(spec: PipelineSpec) -> Compiled:
    """`placement = any` (a searching spec with several placements): compile each placement (the
    same model) and keep the shortest."""
    best, _time, reasons = shortest((f"placement = {placement}", lambda p=placement: with_placement(spec, p))
                                    for placement in spec.placements)
    if best is None:
        raise SchedError([Diagnostic(f"placement = any: no placement can run this pipeline "
                                     f"({'; '.join(reasons)})",
                                     spec.source.span("placement") or spec.source.pipeline)])
    return best
