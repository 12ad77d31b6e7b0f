"""`schedc viz`, `trace` and `dag`: pictures of a plan (SVG/PNG timelines, Chrome traces, the DAG)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ..compiler import compile_spec
from ..errors import SchedError
from .common import (UsageError, compiled_timeline, parse_families, load_specs, output_format, select_pipelines, write_output,
                     family_of)


def cmd_viz(args) -> int:
    from ..viz.png import svg_to_png
    from ..viz.timeline import MIN_WIDTH, Panel, render_timeline_svg

    if args.width is not None and args.width < MIN_WIDTH:
        raise UsageError(f"--width {args.width} is too narrow: a timeline needs at least {MIN_WIDTH} "
                         "pixels for its rank labels, legend and caption (leave --width out to size "
                         "the picture from the makespan)")
    if not args.scale > 0:
        raise UsageError(f"--scale must be a positive factor, got {args.scale:g}")
    fmt = output_format(args.output, args.format, ("svg", "png"), "a timeline")
    _source, specs = load_specs(args.file)
    [spec] = select_pipelines(specs, args.pipeline, single=True)
    notes: tuple[str, ...] = ()
    if args.compare:
        panels, notes = _compare_panels(spec, parse_families(args.compare))
    else:
        compiled, timeline = compiled_timeline(spec)
        panels = [Panel(compiled.spec, timeline)]
    svg = render_timeline_svg(panels, width=args.width, notes=notes)
    write_output(svg if fmt == "svg" else svg_to_png(svg, args.scale), args.output, [args.file])
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


def _window(text: str | None, what: str) -> set[int] | None:
    """`0-3,7` -> {0, 1, 2, 3, 7}."""
    if not text:
        return None
    chosen = set()
    try:
        for part in text.split(","):
            low, _, high = part.partition("-")
            chosen.update(range(int(low), int(high or low) + 1))
    except ValueError:
        raise UsageError(f"--{what} takes numbers and ranges like 0-3,7; got '{text}'") from None
    return chosen


def cmd_dag(args) -> int:
    from ..viz.dag_picture import DotMissing, build_dot, render_dot

    fmt = output_format(args.output, None, ("svg", "png", "pdf", "dot"), "the DAG")
    _source, specs = load_specs(args.file)
    [spec] = select_pipelines(specs, args.pipeline, single=True)
    dag = compile_spec(spec).dag
    dot = build_dot(dag, _window(args.ranks, "ranks"), _window(args.microbatches, "microbatches"))
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
        return 1
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
