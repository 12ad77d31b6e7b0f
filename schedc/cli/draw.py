"""`schedc viz`, `trace` and `dag`: pictures of a plan (SVG/PNG timelines, Chrome traces, the DAG)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ..compiler import compile_spec
from ..errors import SchedError
from .common import (UsageError, compiled_timeline, parse_families, load_specs, output_format, select_pipelines, write_output,
                     family_of, to_png)


def check_width(width: int | None, flag: str = "--width") -> None:
    """A picture width the timeline can be drawn at: from MIN_WIDTH to MAX_SIDE pixels."""
    from ..viz.png import MAX_SIDE
    from ..viz.timeline import MIN_WIDTH

    if width is not None and width < MIN_WIDTH:
        raise UsageError(f"{flag} {width} is too narrow: a timeline needs at least {MIN_WIDTH} "
                         "pixels for its rank labels, legend and caption (leave --width out to size "
                         "the picture from the makespan)")
    if width is not None and width > MAX_SIDE:
        raise UsageError(f"{flag} {width} is over the limit of {MAX_SIDE:,} pixels a side")


def render_timeline(panels, width: int | None, notes: tuple[str, ...] = ()) -> str:
    """`render_timeline_svg`, a picture over the size limit a usage error naming the limit."""
    from ..viz.png import PictureTooLarge
    from ..viz.timeline import render_timeline_svg

    try:
        return render_timeline_svg(panels, width=width, notes=notes)
    except PictureTooLarge as error:
        raise UsageError(str(error)) from None


def cmd_viz(args) -> int:
    from ..viz.timeline import Panel

    check_width(args.width)
    if not args.scale > 0:
        raise UsageError(f"--scale must be a positive factor, got {args.scale:g}")
    fmt = output_format(args.output, args.format, ("svg", "png"), "a timeline")
    families = parse_families(args.compare, "--compare") if args.compare is not None else None
    _source, specs = load_specs(args.file)
    [spec] = select_pipelines(specs, args.pipeline, single=True)
    notes: tuple[str, ...] = ()
    if families:
        panels, notes = _compare_panels(spec, families)
    else:
        compiled, timeline = compiled_timeline(spec)
        panels = [Panel(compiled.spec, timeline)]
    svg = render_timeline(panels, args.width, notes)
    write_output(svg if fmt == "svg" else to_png(svg, args.scale), args.output, [args.file])
    return 0


def _compare_panels(spec, families: list[str]):
    """A panel per family that compiles (the same model, `family_of`); a family that does not
    (memory, its constraints) is skipped with a note, as `schedc compare` does."""
    from ..viz.timeline import Panel

    panels, notes = [], []
    for family in families:
        try:
            compiled, timeline = compiled_timeline(family_of(spec, family))
        except SchedError as error:
            notes.append(f"{family} skipped: {error.diagnostics[0].message}")
            print(f"schedc: note: {notes[-1]}", file=sys.stderr)
            continue
        panels.append(Panel(compiled.spec, timeline))
    if not panels:
        raise UsageError(f"no family of --compare fits this pipeline: {'; '.join(notes)}")
    return panels, tuple(notes)


def cmd_trace(args) -> int:
    from ..viz.trace import build_trace

    output_format(args.output, None, ("json",), "a Chrome trace")
    _source, specs = load_specs(args.file)
    [spec] = select_pipelines(specs, args.pipeline, single=True)
    compiled, timeline = compiled_timeline(spec)
    trace = build_trace(compiled.spec, compiled.plan, timeline)
    write_output(json.dumps(trace) + "\n", args.output, [args.file])
    return 0


def _window(text: str | None, what: str, count: int) -> set[int] | None:
    """`0-3,7` -> {0, 1, 2, 3, 7}: numbers and ascending ranges from 0 to count - 1."""
    if text is None:
        return None
    chosen = set()
    for part in text.split(","):
        low, dash, high = part.strip().partition("-")
        try:
            first, last = int(low), int(high if dash else low)
        except ValueError:
            raise UsageError(f"--{what} takes numbers and ranges like 0-3,7; got '{text}'") from None
        if not (0 <= first < count and 0 <= last < count):
            raise UsageError(f"--{what} {text}: this pipeline has {what} 0 to {count - 1}")
        if first > last:
            raise UsageError(f"--{what} {text}: the range {part.strip()} runs backwards; write {last}-{first}")
        chosen.update(range(first, last + 1))
    return chosen


def cmd_dag(args) -> int:
    from ..viz.dag_picture import DotMissing, build_dot, render_dot

    fmt = output_format(args.output, None, ("svg", "png", "pdf", "dot"), "the DAG")
    _source, specs = load_specs(args.file)
    [spec] = select_pipelines(specs, args.pipeline, single=True)
    ranks = _window(args.ranks, "ranks", spec.ranks)
    microbatches = _window(args.microbatches, "microbatches", spec.microbatches)
    dot = build_dot(compile_spec(spec).dag, ranks, microbatches)
    if fmt == "dot":
        write_output(dot.source, args.output, [args.file])
        return 0
    try:
        write_output(render_dot(dot, fmt), args.output, [args.file])
    except DotMissing as error:
        fallback = str(Path(args.output).with_suffix(".dot"))
        if Path(fallback).exists():
            raise UsageError(f"{error.diagnostics[0].message}; and '{fallback}' exists, so the .dot "
                             "source was not written either") from None
        write_output(dot.source, fallback, [args.file])
        print(f"schedc: error: {error.diagnostics[0].message}; wrote the .dot source to {fallback} "
              "instead", file=sys.stderr)
        return 2  # a missing tool, not a problem in the input
    return 0


def register(sub) -> None:
    """Add viz, trace and dag to the `schedc` parser's subcommands."""
    p = sub.add_parser("viz", help="draw the simulated timeline (SVG or PNG)")
    p.add_argument("file")
    p.add_argument("-o", "--output", required=True, help="NAME.svg or NAME.png")
    p.add_argument("--pipeline")
    p.add_argument("--format", choices=("svg", "png"), help="default: from -o's extension")
    p.add_argument("--compare", metavar="FAMILIES", help="stack these families on one time axis, "
                   "e.g. 1f1b,zb-h1,zbv,dualpipe")
    p.add_argument("--width", type=int, help="picture width in pixels (default: from the makespan)")
    p.add_argument("--scale", type=float, default=1.0, help="PNG resolution factor (default 1)")
    p.set_defaults(func=cmd_viz)

    p = sub.add_parser("trace", help="write a Chrome trace (Perfetto) of the simulated step")
    p.add_argument("file")
    p.add_argument("-o", "--output", required=True, help="NAME.json")
    p.add_argument("--pipeline")
    p.set_defaults(func=cmd_trace)

    p = sub.add_parser("dag", help="draw the dependency DAG through graphviz")
    p.add_argument("file")
    p.add_argument("-o", "--output", required=True, help="NAME.svg, .png, .pdf or .dot")
    p.add_argument("--pipeline")
    p.add_argument("--ranks", help="draw only these ranks, e.g. 0-3")
    p.add_argument("--microbatches", help="draw only these microbatches, e.g. 0-1")
    p.set_defaults(func=cmd_dag)
