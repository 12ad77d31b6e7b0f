"""Our split beside the anchors' on the same input, and what moved when the cluster changed.

`build_report` scores the chosen split and every anchor's (uniform, Megatron's best first/last
flags, torchtitan's defaults, DeepSpeed 'parameters', the min-max bottleneck) with the same
evaluator, so each row's makespan, slowest stage and peak memory per rank come from the same
simulation; `layer_ranks` says which ranks hold each layer, and `moved_layers` which layers
change rank when the cluster changes. The table `schedc partition` prints, and its `--json`, are written by cli/partition.py.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from .anchors import deepspeed_parameters_bounds, megatron_flag_bounds, torchtitan_bounds, uniform_bounds
from .best_split import DEFAULT_BUDGET, Evaluation, Evaluator, SplitChoice, choose_split
from .problem import Bounds, PartitionProblem


@dataclass(frozen=True)
class Row:
    """One split on the table: who proposes it, and its simulated figures (None: the rule
    cannot express a split here, and `note` says why)."""

    name: str
    result: Evaluation | None
    note: str = ""


@dataclass(frozen=True)
class Report:
    problem: PartitionProblem
    choice: SplitChoice
    rows: tuple[Row, ...]


def _is_split(problem: PartitionProblem, bounds: Bounds | None) -> bool:
    """A split of the layers into the stages, every stage non-empty (an anchor follows its own
    rule, not our pins or minimum)."""
    if bounds is None or len(bounds) != problem.num_stages + 1:
        return False
    return bounds[0] == 0 and bounds[-1] == len(problem.model) and all(
        b > a for a, b in zip(bounds, bounds[1:]))


def _row(name: str, ev: Evaluator, bounds: Bounds | None, note: str = "") -> Row:
    if not _is_split(ev.problem, bounds):
        return Row(name, None, note or "cannot express a split here (a stage would be empty)")
    return Row(name, ev.evaluate(bounds), note)


def anchor_rows(problem: PartitionProblem, ev: Evaluator, choice: SplitChoice) -> list[Row]:
    model, stages = problem.model, problem.num_stages
    flags = [(ev.evaluate(b).key(), ab, b) for ab, b in megatron_flag_bounds(model, stages)
             if _is_split(problem, b)]
    best_flags = min(flags) if flags else None
    return [
        _row("uniform (Megatron default)", ev, uniform_bounds(model, stages)),
        _row("Megatron first/last flags", ev, best_flags[2] if best_flags else None,
             f"--decoder-first-pipeline-num-layers {best_flags[1][0]} "
             f"--decoder-last-pipeline-num-layers {best_flags[1][1]}" if best_flags else
             "no first/last counts leave the middle stages an equal share"),
        _row("torchtitan defaults", ev, torchtitan_bounds(model, stages)),
        _row("DeepSpeed 'parameters'", ev, deepspeed_parameters_bounds(model, stages)),
        Row("min-max bottleneck (DP)", choice.minmax, "" if choice.minmax else "no split"),
    ]


def build_report(problem: PartitionProblem, budget: int = DEFAULT_BUDGET) -> Report:
    ev = Evaluator(problem)
    choice = choose_split(problem, budget, ev)
    anchors = anchor_rows(problem, ev, choice)
    if choice.interrupted:  # Ctrl-C: the best of every split scored, the anchors' included
        best = min((e for e in ev.cache.values() if e.fits), key=Evaluation.key)
        choice = replace(choice, best=best, evaluated=ev.count)
    return Report(problem, choice, tuple([Row("schedc (simulated step)", choice.best)] + anchors))


def layer_ranks(problem: PartitionProblem, bounds: Bounds) -> list[tuple[int, ...]]:
    """For each layer: the ranks that hold it (two under DualPipe)."""
    spec, out = problem.spec, []
    for s, (a, b) in enumerate(zip(bounds, bounds[1:])):
        ranks = tuple(sorted({spec.rank_of(d, s) for d in range(spec.directions)}))
        out += [ranks] * (b - a)
    return out


def moved_layers(before: Report, after: Report) -> list[tuple[str, tuple[int, ...], tuple[int, ...]]]:
    """(layer name, ranks before, ranks after) of each layer whose ranks differ between two
    reports on the same layers (a changed cluster)."""
    model = after.problem.model
    old = layer_ranks(before.problem, before.choice.best.bounds)
    new = layer_ranks(after.problem, after.choice.best.bounds)
    return [(model.layers[i].name, a, b) for i, (a, b) in enumerate(zip(old, new)) if a != b]
