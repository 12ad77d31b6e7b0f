"""Our split beside the anchors' on the same input, and what moved when the cluster changed.

`build_report` scores the chosen split and every anchor's (uniform, Megatron's best first/last
flags, torchtitan's defaults, DeepSpeed 'parameters', the min-max bottleneck) with the same
evaluator, so each row's makespan, slowest stage and peak memory per rank come from the same
simulation. `format_report` is the table `schedc partition` prints; `report_json` its `--json`.
"""

from __future__ import annotations

from dataclasses import dataclass

from .partition_anchors import (deepspeed_parameters_bounds, megatron_flag_bounds,
                                torchtitan_bounds, uniform_bounds)
from .partition_problem import Bounds, PartitionProblem
from .partition_search import DEFAULT_BUDGET, Evaluation, Evaluator, SplitChoice, choose_split
from .partition_write import (deepspeed_parts, format_cost_block, format_megatron_layout,
                              torchtitan_stages)


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
    rows = [Row("schedc (simulated step)", choice.best)] + anchor_rows(problem, ev, choice)
    return Report(problem, choice, tuple(rows))


def _memory_text(memory: tuple[float, ...]) -> str:
    return " ".join(f"{m:g}" for m in memory)


def _fits_text(problem: PartitionProblem, result: Evaluation) -> str:
    return "" if result.fits else "  over the limit"


def format_report(report: Report) -> str:
    problem, choice = report.problem, report.choice
    spec, best = problem.spec, choice.best
    speeds = ",".join(f"{s:g}" for s in problem.devices.speeds)
    limits = {x for x in problem.devices.limits}
    limit = "none" if limits == {None} else ",".join(f"{x:g}" if x is not None else "-" for x in problem.devices.limits)
    lines = [f"{len(problem.model)} layers onto {problem.num_stages} stages: {spec.schedule}, {spec.ranks} ranks "
             f"(speeds {speeds}), {spec.microbatches} microbatches, memory limit {limit}",
             f"{'split':<28} {'makespan':>9} {'slowest':>8}  {'peak memory per rank':<24} layout"]
    for row in report.rows:
        if row.result is None:
            lines.append(f"{row.name:<28} {'-':>9} {'-':>8}  {row.note}")
            continue
        r = row.result
        lines.append(f"{row.name:<28} {r.makespan:>9g} {r.bottleneck:>8g}  {_memory_text(r.memory):<24} "
                     f"{format_megatron_layout(problem.model, r.bounds)}{_fits_text(problem, r)}")
        if row.note:
            lines.append(f"{'':<28}   ({row.note})")
    proof = ("optimal: every split that could be faster was simulated" if choice.exact else
             f"best found; the search stopped at its budget of {choice.evaluated} splits")
    lines += [f"lower bound on any split's makespan: {choice.lower_bound:g}; {proof} "
              f"({choice.evaluated} splits simulated)", "",
              f"Megatron:   --pipeline-model-parallel-layout \"{format_megatron_layout(problem.model, best.bounds)}\"",
              f"DeepSpeed:  parts = {deepspeed_parts(best.bounds)}", "torchtitan: module_names_per_stage = ["]
    lines += [f"  {names!r}," for names in torchtitan_stages(problem.model, best.bounds)]
    lines += ["]", "", "# .sched stage costs of this split", format_cost_block(problem, best.bounds)]
    return "\n".join(lines)


def evaluation_json(problem: PartitionProblem, result: Evaluation) -> dict:
    return {"stages": torchtitan_stages(problem.model, result.bounds), "makespan": result.makespan,
            "bottleneck": result.bottleneck, "peak_memory": list(result.memory),
            "layout": format_megatron_layout(problem.model, result.bounds),
            "parts": deepspeed_parts(result.bounds), "fits": result.fits}


def report_json(report: Report) -> dict:
    problem, choice = report.problem, report.choice
    out = evaluation_json(problem, choice.best)
    out.update({"schedule": problem.spec.schedule, "ranks": problem.spec.ranks,
                "microbatches": problem.spec.microbatches, "lower_bound": choice.lower_bound,
                "exact": choice.exact, "evaluated": choice.evaluated, "anchors": []})
    for row in report.rows[1:]:
        entry = {"name": row.name, "note": row.note}
        if row.result is not None:
            entry.update(evaluation_json(problem, row.result))
        out["anchors"].append(entry)
    return out


def layer_ranks(problem: PartitionProblem, bounds: Bounds) -> list[tuple[int, ...]]:
    """For each layer: the ranks that hold it (two under DualPipe)."""
    spec, out = problem.spec, []
    for s, (a, b) in enumerate(zip(bounds, bounds[1:])):
        ranks = tuple(sorted({spec.rank_of(d, s) for d in range(spec.directions)}))
        out += [ranks] * (b - a)
    return out


def format_moves(before: Report, after: Report) -> str:
    """Which layers change rank between two reports on the same layers (a changed cluster)."""
    model = after.problem.model
    old = layer_ranks(before.problem, before.choice.best.bounds)
    new = layer_ranks(after.problem, after.choice.best.bounds)
    moved = [(model.layers[i].name, a, b) for i, (a, b) in enumerate(zip(old, new)) if a != b]
    head = (f"before: makespan {before.choice.best.makespan:g} on {before.problem.spec.ranks} ranks "
            f"({format_megatron_layout(model, before.choice.best.bounds)}); after: makespan "
            f"{after.choice.best.makespan:g} on {after.problem.spec.ranks} ranks "
            f"({format_megatron_layout(model, after.choice.best.bounds)})")
    if not moved:
        return head + "\nno layer moves"
    lines = [head, f"{len(moved)} of {len(model)} layers move:"]
    lines += [f"  {name}: rank {','.join(map(str, a))} -> rank {','.join(map(str, b))}" for name, a, b in moved]
    return "\n".join(lines)


def moves_json(before: Report, after: Report) -> list[dict]:
    model = after.problem.model
    old = layer_ranks(before.problem, before.choice.best.bounds)
    new = layer_ranks(after.problem, after.choice.best.bounds)
    return [{"layer": model.layers[i].name, "from": list(a), "to": list(b)}
            for i, (a, b) in enumerate(zip(old, new)) if a != b]
