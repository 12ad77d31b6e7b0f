"""`schedc partition`: choose which layers each rank holds, by the chosen schedule's simulated step.

    schedc partition layers.json --ranks 8 --microbatches 16 --schedule 1f1b [--limit 24]
                                 [--speeds 2,2,1,1] [--pin head] [--min-layers 2] [--json]
    schedc partition model.sched            # a pipeline with a layers block and stages = auto
    schedc partition model.sched --ranks 7  # re-balance for a changed cluster: what moves

It prints the chosen split beside the anchors' and writes it in Megatron's, DeepSpeed's,
torchtitan's and the .sched file's forms.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

from ..backends.torch.options import positive_int
from ..balance.layers_json import read_layers_json
from ..balance.partition_problem import PartitionProblem, family_spec
from ..balance.partition_report import (build_report, format_moves, format_report, moves_json,
                                        report_json)
from ..balance.partition_search import DEFAULT_BUDGET
from ..balance.partition_stages import problem_of_spec
from ..errors import SchedError, SourceFile
from ..lang.layers import Devices
from ..lang.spec import FAMILIES
from .common import UsageError, _compiled_timeline, _load, _output_format, _select, _write


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
    _source, specs = _load(args.file, resolve=False)
    [spec] = _select(specs, args.pipeline, single=True)
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


def cmd_partition(args) -> int:
    after = build_report(_problem(args, args.ranks, args.speeds), args.budget)
    before = None
    if args.from_ranks is not None or args.from_speeds is not None:
        previous = args.from_ranks if args.from_ranks is not None else after.problem.spec.ranks
        before = build_report(_problem(args, previous, args.from_speeds), args.budget)
    if args.json:
        out = report_json(after)
        if before is not None:
            out["moves"] = moves_json(before, after)
        print(json.dumps(out, indent=1))
        return 0
    print(format_report(after), end="")
    if before is not None:
        print("\n# re-balanced for the changed cluster\n" + format_moves(before, after))
    if args.viz:
        _draw(after, args.viz, args.width)
    return 0


def _draw(report, output: str, width: int | None) -> None:
    """The uniform split and the chosen one, simulated, on one time axis (SVG or PNG)."""
    from ..balance.partition_problem import split_spec
    from ..balance.partition_write import format_megatron_layout
    from ..viz.png import svg_to_png
    from ..viz.timeline import Panel, render_timeline_svg

    fmt = _output_format(output, None, ("svg", "png"), "a timeline")
    problem, panels = report.problem, []
    for row in (report.rows[1], report.rows[0]):  # before (uniform), after (chosen)
        if row.result is None:
            continue
        layout = format_megatron_layout(problem.model, row.result.bounds)
        spec = replace(split_spec(problem, row.result.bounds), name=f"{row.name} {layout}")
        compiled, timeline = _compiled_timeline(spec)
        panels.append(Panel(compiled.spec, timeline))
    svg = render_timeline_svg(panels, width=width)
    _write(svg if fmt == "svg" else svg_to_png(svg), output, [report.problem.model.span.file
                                                              if report.problem.model.span else ""])


def _memory(text: str) -> float:
    """An argparse type: a finite number >= 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got '{text}'") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text}")
    return value


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
    p.add_argument("--limit", type=_memory, help="memory per rank: parameters plus the activations the "
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
