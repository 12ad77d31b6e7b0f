"""`schedc partition`: choose which layers each rank holds, by the chosen schedule's simulated step.

    schedc partition layers.json --ranks 8 --microbatches 16 --schedule 1f1b [--limit 24]
                                 [--speeds 2,2,1,1] [--pin head] [--min-layers 2] [--json]
    schedc partition model.sched            # a pipeline with a layers block and stages = auto
    schedc partition model.sched --ranks 7  # re-balance for a changed cluster: what moves

It prints the chosen split beside the anchors' and writes it in Megatron's, DeepSpeed's,
torchtitan's and the .sched file's forms (the table and the JSON are written here; the work is
schedc.partition's).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

from ..backends.torch.options import non_negative_float, positive_int
from ..errors import SchedError, SourceFile
from ..lang.layers import Devices
from ..lang.spec import FAMILIES
from ..partition.auto_stages import problem_of_spec
from ..partition.best_split import DEFAULT_BUDGET
from ..partition.compare import Report, build_report, moved_layers
from ..partition.evaluate import Evaluation
from ..partition.formats import deepspeed_parts, format_cost_block, format_megatron_layout, torchtitan_stages
from ..partition.layers_json import read_layers_json
from ..partition.problem import PartitionProblem, family_spec, split_spec
from .common import (UsageError, compiled_timeline, load_specs, output_format, select_pipelines, to_png,
                     write_output)
from .draw import check_width, render_timeline
from .plans import INTERRUPTED


def _read_json(path: str):
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read '{path}': {getattr(exc, 'strerror', None) or exc}") from None
    try:
        return read_layers_json(text, path)
    except SchedError as error:
        error.source = SourceFile(path, text)
        raise


def _speeds(text: str | None, ranks: int, flag: str = "--speeds") -> tuple[float, ...]:
    if not text:
        return (1.0,) * ranks
    try:
        speeds = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise UsageError(f"{flag} takes one number per rank, like 2,2,1,1; got '{text}'") from None
    if len(speeds) != ranks:
        raise UsageError(f"{flag} gives {len(speeds)} speeds for {ranks} ranks; give one per rank")
    for rank, speed in enumerate(speeds):
        if not speed > 0 or speed == float("inf"):
            raise UsageError(f"{flag}: a speed must be a finite number > 0, got {speed:g} for rank {rank}")
    return speeds


def _pins(model, names: list[str] | None) -> tuple[int, ...]:
    pins = []
    for name in names or ():
        index = model.index(name)
        if index is None:
            raise UsageError(f"--pin {name}: no layer has that name (layers: {', '.join(model.names[:6])}"
                             f"{', ...' if len(model) > 6 else ''})")
        pins.append(index)
    return tuple(sorted(pins))


def _json_problem(args, ranks: int, speeds: str | None) -> PartitionProblem:
    model = _read_json(args.file)
    if args.microbatches is None:
        raise UsageError("a layers JSON file needs --ranks and --microbatches (and --schedule, default 1f1b)")
    spec = family_spec(args.schedule or "1f1b", ranks, args.microbatches, args.chunks)
    devices = Devices(_speeds(speeds, ranks), (args.limit,) * ranks)
    return PartitionProblem(model, spec, devices, _pins(model, args.pin), args.min_layers or 1)


def _sched_problem(args, ranks: int | None, speeds: str | None) -> PartitionProblem:
    """The file's problem, with what the command line changes (ranks, microbatches, family,
    speeds, limit, pins)."""
    _source, specs = load_specs(args.file, resolve=False)
    [spec] = select_pipelines(specs, args.pipeline, single=True)
    problem = problem_of_spec(spec)
    if ranks is not None or args.microbatches or args.schedule or args.chunks:
        family = args.schedule or spec.schedule
        chunks = args.chunks or (spec.chunks if family == spec.schedule else None)
        template = family_spec(family, ranks or spec.ranks, args.microbatches or spec.microbatches,
                               chunks, spec.name)
        problem = replace(problem, spec=replace(template, source=spec.source))
    devices = _devices_for(problem.devices, problem.spec.ranks, speeds, args.limit)
    pins = set(problem.pins) | set(_pins(problem.model, args.pin))
    return replace(problem, devices=devices, pins=tuple(sorted(pins)),
                   min_layers=args.min_layers or problem.min_layers)


def _devices_for(devices: Devices, ranks: int, speeds: str | None, limit: float | None) -> Devices:
    """The file's devices on `ranks` ranks: --speeds and --limit replace the file's; a rank count
    that differs keeps the first ranks' speeds (new ranks at speed 1) and the first rank's limit."""
    if len(devices.speeds) != ranks:
        kept = devices.speeds[:ranks] + (1.0,) * max(0, ranks - len(devices.speeds))
        devices = Devices(kept, (devices.limits[0],) * ranks, devices.span)
    if speeds:
        devices = Devices(_speeds(speeds, ranks), devices.limits, devices.span)
    if limit is not None:
        devices = Devices(devices.speeds, (limit,) * ranks, devices.span)
    return devices


def _problem(args, ranks, speeds) -> PartitionProblem:
    if args.file.endswith(".sched"):
        return _sched_problem(args, ranks, speeds)
    if ranks is None:
        raise UsageError("a layers JSON file needs --ranks and --microbatches (and --schedule, default 1f1b)")
    return _json_problem(args, ranks, speeds)


def _check_min_layers(args, problem: PartitionProblem) -> PartitionProblem:
    """--min-layers that no split can meet is a usage error naming the flag and what fits."""
    if args.min_layers is None or len(problem.model) >= problem.num_stages * args.min_layers:
        return problem
    fits = len(problem.model) // problem.num_stages
    way_out = (f"--min-layers {fits} or less fits" if fits >= 1 else
               "even one layer per stage does not fit: use fewer ranks")
    raise UsageError(f"--min-layers {args.min_layers}: {problem.num_stages} stages x {args.min_layers} "
                     f"layers is {problem.num_stages * args.min_layers}, but the model has "
                     f"{len(problem.model)} layers; {way_out}")


def cmd_partition(args) -> int:
    fmt = output_format(args.viz, None, ("svg", "png"), "a timeline") if args.viz else None
    check_width(args.width)  # the picture's format, folder and width: before the work and the report
    after = build_report(_check_min_layers(args, _problem(args, args.ranks, args.speeds)), args.budget)
    if after.choice.interrupted:  # Ctrl-C: the best split so far, marked, and stop
        return _report_interrupted(after, args.json)
    before = None
    if args.from_ranks is not None or args.from_speeds is not None:
        previous = args.from_ranks if args.from_ranks is not None else after.problem.spec.ranks
        before = build_report(_check_min_layers(args, _problem(args, previous, args.from_speeds)), args.budget)
        if before.choice.interrupted:  # Ctrl-C on the cluster before the change: what is known now
            return _report_interrupted(after, args.json)
    if args.json:
        out = report_json(after)
        if before is not None:
            out["moves"] = moves_json(before, after)
        print(json.dumps(out, indent=1))
        return 0
    svg = _draw(after, args.width) if args.viz else None  # a picture too large refused before the report
    print(format_report(after), end="")
    if before is not None:
        print("\n# re-balanced for the changed cluster\n" + format_moves(before, after))
    if svg is not None:
        inputs = [after.problem.model.span.file if after.problem.model.span else args.file]
        write_output(svg if fmt == "svg" else to_png(svg), args.viz, inputs)
    return 0


def _report_interrupted(report: Report, as_json: bool) -> int:
    """Ctrl-C stopped the schedule's search or the split search: the report of the best split so
    far (no picture, no re-balance), a line on standard error, exit 130."""
    if as_json:
        print(json.dumps(report_json(report), indent=1))
    else:
        print(format_report(report), end="")
    print("schedc: interrupted: the partition stopped early; the split shown is the best it had "
          "scored, not proven", file=sys.stderr)
    return INTERRUPTED


def _draw(report, width: int | None) -> str:
    """The SVG of the uniform split and the chosen one, simulated, on one time axis."""
    from ..viz.timeline import Panel

    problem, panels = report.problem, []
    for row in (report.rows[1], report.rows[0]):  # before (uniform), after (chosen)
        if row.result is None:
            continue
        layout = format_megatron_layout(problem.model, row.result.bounds)
        spec = replace(split_spec(problem, row.result.bounds), name=f"{row.name} {layout}")
        compiled, timeline = compiled_timeline(spec)
        panels.append(Panel(compiled.spec, timeline))
    return render_timeline(panels, width)


def _memory_text(memory: tuple[float, ...]) -> str:
    return " ".join(f"{m:g}" for m in memory)


def _fits_text(problem: PartitionProblem, result: Evaluation) -> str:
    return "" if result.fits else "  over the limit"


def format_report(report: Report) -> str:
    """The table `schedc partition` prints: our split beside the anchors', then the chosen split
    in each framework's form."""
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
    if choice.interrupted:
        proof = "interrupted, not proven: the best split scored before Ctrl-C"
    lines += [f"lower bound on any split's makespan: {choice.lower_bound:g}; {proof} "
              f"({choice.evaluated} splits simulated)", "",
              f"Megatron:   --pipeline-model-parallel-layout \"{format_megatron_layout(problem.model, best.bounds)}\"",
              f"DeepSpeed:  parts = {deepspeed_parts(best.bounds)}", "torchtitan: module_names_per_stage = ["]
    lines += [f"  {names!r}," for names in torchtitan_stages(problem.model, best.bounds)]
    lines += ["]", "", "# .sched stage costs of this split", format_cost_block(problem, best.bounds)]
    return "\n".join(lines)


def evaluation_json(problem: PartitionProblem, result: Evaluation) -> dict:
    """One split's figures and forms, for `--json`."""
    return {"stages": torchtitan_stages(problem.model, result.bounds), "makespan": result.makespan,
            "bottleneck": result.bottleneck, "peak_memory": list(result.memory),
            "layout": format_megatron_layout(problem.model, result.bounds),
            "parts": deepspeed_parts(result.bounds), "fits": result.fits}


def report_json(report: Report) -> dict:
    """`--json`: the chosen split, the bound, and each anchor's row."""
    problem, choice = report.problem, report.choice
    out = evaluation_json(problem, choice.best)
    out.update({"schedule": problem.spec.schedule, "ranks": problem.spec.ranks,
                "microbatches": problem.spec.microbatches, "lower_bound": choice.lower_bound,
                "exact": choice.exact, "evaluated": choice.evaluated, "anchors": []})
    if choice.interrupted:
        out["interrupted"] = True
    for row in report.rows[1:]:
        entry = {"name": row.name, "note": row.note}
        if row.result is not None:
            entry.update(evaluation_json(problem, row.result))
        out["anchors"].append(entry)
    return out


def format_moves(before: Report, after: Report) -> str:
    """Which layers change rank between two reports on the same layers (a changed cluster)."""
    model, moved = after.problem.model, moved_layers(before, after)
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
    return [{"layer": name, "from": list(a), "to": list(b)} for name, a, b in moved_layers(before, after)]


def register(sub) -> None:
    """Add `partition` to the `schedc` parser's subcommands."""
    p = sub.add_parser("partition", help="choose the layers each rank holds, by the schedule's simulated step")
    p.add_argument("file", help="a layers JSON file, or a .sched file with a layers block and stages = auto")
    p.add_argument("--pipeline", help="the pipeline, when the .sched file has several")
    p.add_argument("--ranks", type=positive_int, help="pipeline ranks (required for a JSON file)")
    p.add_argument("--microbatches", type=positive_int, help="microbatches per step (required for a JSON file)")
    p.add_argument("--schedule", choices=FAMILIES, help="the schedule family whose step is simulated "
                   "(default: the file's, or 1f1b)")
    p.add_argument("--chunks", type=positive_int, help="stages per rank for interleaved (default 2)")
    p.add_argument("--limit", type=non_negative_float, help="memory per rank: parameters plus the activations the "
                   "schedule holds")
    p.add_argument("--speeds", help="one relative speed per rank, e.g. 2,2,1,1")
    p.add_argument("--pin", action="append", metavar="LAYER", help="a layer that must start a stage "
                   "(repeatable)")
    p.add_argument("--min-layers", type=positive_int, help="at least this many layers per stage (default 1)")
    p.add_argument("--budget", type=positive_int, default=DEFAULT_BUDGET, help="most splits to simulate "
                   f"(default {DEFAULT_BUDGET}); the output says whether the choice is proven optimal")
    p.add_argument("--from-ranks", type=positive_int, help="re-balance: the rank count before the change; "
                   "prints which layers move")
    p.add_argument("--from-speeds", help="re-balance: the speeds before the change")
    p.add_argument("--viz", metavar="OUT", help="draw the uniform split and the chosen one, simulated, "
                   "on one time axis (.svg or .png)")
    p.add_argument("--width", type=int, help="picture width in pixels for --viz")
    p.add_argument("--json", action="store_true", help="one JSON object: stages, makespan, bottleneck, "
                   "peak_memory, layout, parts, anchors")
    p.set_defaults(func=cmd_partition)
