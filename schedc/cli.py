"""The `schedc` command line: compile, simulate, check, compare.

Bad input never produces a traceback: every `SchedError` is printed with its place and a caret,
and the exit status is 1 (2 for a usage error, as argparse does).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from . import __version__
from .closed_forms import closed_form, parameter_copies
from .compiler import Compiled, compile_spec, with_family
from .errors import Diagnostic, SchedError, SourceFile, render_error
from .grid import format_grid
from .ir import format_plan_text, plan_to_json
from .simulate import Timeline, simulate
from .spec import FAMILIES, PipelineSpec, check_pipeline, spec_to_json
from .syntax import parse_program
from .writer import format_pipeline


class UsageError(Exception):
    """A problem with the command line or the files it names (not with .sched text)."""


def _load(path: str) -> tuple[SourceFile, list[PipelineSpec]]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read '{path}': {getattr(exc, 'strerror', None) or exc}") from None
    source = SourceFile(path, text)
    try:
        specs = [check_pipeline(p) for p in parse_program(text, path).pipelines]
    except SchedError as error:
        error.source = source
        raise
    if not specs:
        raise SchedError([Diagnostic("no pipeline in this file; write `pipeline NAME { ranks = 4 "
                                     "microbatches = 8 schedule = 1f1b }`", None)])
    return source, specs


def _select(specs: list[PipelineSpec], name: str | None, single: bool) -> list[PipelineSpec]:
    if name is not None:
        chosen = [s for s in specs if s.name == name]
        if not chosen:
            raise UsageError(f"no pipeline named '{name}' (the file has: "
                             f"{', '.join(s.name for s in specs)})")
        return chosen
    if single and len(specs) > 1:
        raise UsageError(f"the file has {len(specs)} pipelines ({', '.join(s.name for s in specs)}); "
                         "pick one with --pipeline NAME")
    return specs


def _write(data: str | bytes, output: str | None, inputs: list[str], force: bool = False) -> None:
    """Write to `output` (the user named it) or standard output; never over an input file."""
    if output is None or output == "-":
        if isinstance(data, bytes):
            raise UsageError("binary output needs a file: add -o NAME")
        sys.stdout.write(data)
        return
    out = Path(output)
    if any(out.resolve() == Path(i).resolve() for i in inputs):
        raise UsageError(f"refusing to overwrite the input file '{output}'; choose another -o")
    if out.suffix == ".sched" and out.exists() and not force:
        raise UsageError(f"refusing to overwrite '{output}': it is a .sched file, perhaps "
                         "hand-written; choose another -o, or add --force")
    out.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, bytes):
        out.write_bytes(data)
    else:
        out.write_text(data, encoding="utf-8")
    print(f"wrote {output}", file=sys.stderr)


def _output_format(output: str | None, given: str | None, allowed: tuple[str, ...], what: str) -> str:
    """The format from --format, else from -o's extension; refuses others with the list."""
    fmt = given or (Path(output).suffix.lstrip(".").lower() if output else allowed[0])
    if fmt not in allowed:
        raise UsageError(f"{what} cannot be written as '{fmt}'; choose one of: "
                         f"{', '.join('.' + a for a in allowed)}")
    return fmt


def _header(spec: PipelineSpec, many: bool) -> str:
    return f"# pipeline {spec.name}\n" if many else ""


def cmd_compile(args) -> int:
    _source, specs = _load(args.file)
    specs = _select(specs, args.pipeline, single=args.format == "json")
    chunks = []
    for spec in specs:
        compiled = compile_spec(spec)
        chunks.append(_header(spec, len(specs) > 1) + _format_compiled(compiled, args))
    _write("".join(chunks), args.output, [args.file], force=args.force)
    return 0


def _format_compiled(compiled: Compiled, args) -> str:
    if args.dump == "dag":
        dag = compiled.dag
        edges = sorted(dag.edges(), key=lambda e: (e[1], e[0]))
        return "".join(f"{a} -> {b}{' (cross-rank)' if dag.is_cross_rank(a, b) else ''}\n"
                       for a, b in edges)
    if args.dump == "order":
        return format_plan_text(compiled.order)
    if args.format == "json":
        return json.dumps(plan_to_json(compiled.plan, spec_to_json(compiled.spec)), indent=1) + "\n"
    if args.format == "sched":  # a whole pipeline whose hand-written order is this plan
        return format_pipeline(compiled.spec, compiled.plan.ranks)
    if args.format == "grid":  # compute instructions only, to stay compact
        return format_grid(tuple(tuple(x for x in row if x.is_compute) for row in compiled.plan.ranks))
    return format_plan_text(compiled.plan)


def _timeline_table(spec: PipelineSpec, timeline: Timeline) -> str:
    lines = [f"pipeline {spec.name}: {spec.schedule}, {spec.ranks} ranks, {spec.microbatches} "
             f"microbatches, {spec.num_stages * spec.directions} stage replicas",
             f"makespan      {timeline.makespan:g}",
             f"bubble        {timeline.bubble:g} (largest idle time of a rank)",
             f"bubble ratio  {timeline.bubble_ratio:.4f} (idle / (ranks x makespan))",
             "", f"{'rank':>4} {'busy':>10} {'idle':>10} {'peak activations':>17}"]
    for r in timeline.ranks:
        lines.append(f"{r.rank:>4} {r.busy:>10g} {r.idle:>10g} {r.peak_activations:>17g}")
    path = " ".join(f"{s.instr}@{s.rank}" for s in timeline.critical_path)
    lines += ["", f"critical path ({len(timeline.critical_path)} instructions): {path}"]
    return "\n".join(lines) + "\n"


def cmd_simulate(args) -> int:
    _source, specs = _load(args.file)
    specs = _select(specs, args.pipeline, single=args.json)
    out = []
    for spec in specs:
        compiled = compile_spec(spec)
        timeline = simulate(compiled.spec, compiled.dag, compiled.plan)
        if args.json:
            obj = {"pipeline": spec.name, "schedule": compiled.spec.schedule, **timeline.to_json()}
            out.append(json.dumps(obj, indent=1) + "\n")
        else:
            out.append(_timeline_table(compiled.spec, timeline))
    sys.stdout.write("\n".join(out))
    return 0


def cmd_check(args) -> int:
    status = 0
    for path in args.files:
        try:
            _source, specs = _load(path)
            for spec in specs:
                compile_spec(spec)
            print(f"{path}: ok ({len(specs)} pipeline{'s' if len(specs) != 1 else ''})")
        except SchedError as error:
            _print_error(error, path)
            status = 1
    return status


def _compare_row(spec: PipelineSpec) -> dict:
    compiled = compile_spec(spec)
    timeline = simulate(compiled.spec, compiled.dag, compiled.plan)
    form = closed_form(compiled.spec)
    return {"family": spec.schedule, "ranks": spec.ranks, "stages": spec.num_stages,
            "makespan": timeline.makespan, "bubble": timeline.bubble,
            "closed_form": form.bubble, "closed_form_exact": form.exact, "formula": form.formula,
            "bubble_ratio": timeline.bubble_ratio,
            "peak_activations": max(r.peak_activations for r in timeline.ranks),
            "parameter_copies": parameter_copies(spec)}


def cmd_compare(args) -> int:
    _source, specs = _load(args.file)
    [spec] = _select(specs, args.pipeline, single=True)
    families = _families(args.schedules) if args.schedules else list(FAMILIES)
    rows, skipped = [], []
    for family in families:
        try:
            rows.append(_compare_row(with_family(spec, family)))
        except SchedError as error:
            skipped.append((family, error.diagnostics[0].message))
    if args.json:
        print(json.dumps({"pipeline": spec.name, "rows": rows,
                          "skipped": [{"family": f, "reason": r} for f, r in skipped]}, indent=1))
        return 0
    print(_compare_table(spec, rows, skipped), end="")
    return 0


def _compare_table(spec: PipelineSpec, rows: list[dict], skipped) -> str:
    head = (f"{'family':<11} {'stages':>6} {'makespan':>9} {'bubble':>8} {'closed form':>12} "
            f"{'ratio':>7} {'peak act':>9} {'params':>7}  formula (in the family's stage costs)")
    lines = [f"pipeline {spec.name}: {spec.ranks} ranks, {spec.microbatches} microbatches, the same "
             f"model in every family (a family with k x {spec.num_stages} stages runs each at 1/k of "
             "the file's stage costs)",
             "bubble = largest idle time of a rank; peak act in the file's stage activations; params = "
             "per rank, x model/ranks", head]
    for r in rows:
        form = "-" if r["closed_form"] is None else f"{r['closed_form']:g}"
        if r["closed_form"] is not None and not r["closed_form_exact"]:
            form = f"<={form}"
        lines.append(f"{r['family']:<11} {r['stages']:>6} {r['makespan']:>9g} {r['bubble']:>8g} "
                     f"{form:>12} {r['bubble_ratio']:>7.4f} {r['peak_activations']:>9g} "
                     f"{r['parameter_copies']:>6g}x  {r['formula']}")
    for family, reason in skipped:
        lines.append(f"{family:<11} skipped: {reason}")
    return "\n".join(lines) + "\n"


def _compiled_timeline(spec: PipelineSpec):
    compiled = compile_spec(spec)
    return compiled, simulate(compiled.spec, compiled.dag, compiled.plan)


def cmd_viz(args) -> int:
    from .viz.png import svg_to_png
    from .viz.timeline import Panel, render_timeline_svg

    fmt = _output_format(args.output, args.format, ("svg", "png"), "a timeline")
    _source, specs = _load(args.file)
    [spec] = _select(specs, args.pipeline, single=True)
    if args.compare:
        families = _families(args.compare)
        panels = [Panel(c.spec, t) for c, t in (_compiled_timeline(with_family(spec, f)) for f in families)]
    else:
        compiled, timeline = _compiled_timeline(spec)
        panels = [Panel(compiled.spec, timeline)]
    svg = render_timeline_svg(panels, width=args.width)
    _write(svg if fmt == "svg" else svg_to_png(svg, args.scale), args.output, [args.file])
    return 0


def cmd_trace(args) -> int:
    from .viz.trace import build_trace

    _output_format(args.output, None, ("json",), "a Chrome trace")
    _source, specs = _load(args.file)
    [spec] = _select(specs, args.pipeline, single=True)
    compiled, timeline = _compiled_timeline(spec)
    trace = build_trace(compiled.spec, compiled.plan, timeline)
    _write(json.dumps(trace) + "\n", args.output, [args.file])
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
    from .viz.dagviz import DotMissing, build_dot, render_dot

    fmt = _output_format(args.output, None, ("svg", "png", "pdf", "dot"), "the DAG")
    _source, specs = _load(args.file)
    [spec] = _select(specs, args.pipeline, single=True)
    dag = compile_spec(spec).dag
    dot = build_dot(dag, _window(args.ranks, "ranks"), _window(args.microbatches, "microbatches"))
    if fmt == "dot":
        _write(dot.source, args.output, [args.file])
        return 0
    try:
        _write(render_dot(dot, fmt), args.output, [args.file])
    except DotMissing as error:
        fallback = str(Path(args.output).with_suffix(".dot"))
        if Path(fallback).exists():
            raise UsageError(f"{error.diagnostics[0].message}; and '{fallback}' exists, so the .dot "
                             "source was not written either") from None
        _write(dot.source, fallback, [args.file])
        print(f"schedc: error: {error.diagnostics[0].message}; wrote the .dot source to {fallback} "
              "instead", file=sys.stderr)
        return 1
    return 0


def cmd_export(args) -> int:
    from .torch_csv import write_torch_csv

    _output_format(args.output, None, ("csv",), "a PyTorch schedule")
    _source, specs = _load(args.file)
    [spec] = _select(specs, args.pipeline, single=True)
    compiled = compile_spec(spec)
    _write(write_torch_csv(compiled.spec, compiled.plan, args.with_comms), args.output, [args.file])
    return 0


def _read_csv(path: str, placement: str, ranks: int | None, name: str, microbatches: int | None):
    from .torch_csv import read_torch_csv

    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read '{path}': {getattr(exc, 'strerror', None) or exc}") from None
    try:
        return read_torch_csv(text, path, placement, ranks, name=name, microbatches=microbatches)
    except SchedError as error:
        error.source = SourceFile(path, text)
        raise


def cmd_import(args) -> int:
    spec = _read_csv(args.file, args.placement, args.ranks,
                     re.sub(r"\W", "_", Path(args.file).stem) or "imported", args.microbatches)
    try:
        compiled = compile_spec(spec)
    except SchedError as error:
        error.source = SourceFile(args.file, Path(args.file).read_text(encoding="utf-8"))
        raise
    rows = tuple(tuple(x for x in row if x.is_compute) for row in compiled.plan.ranks)
    text = (f"# imported from {args.file} (PyTorch schedule CSV, placement {args.placement}); "
            "set the costs below to your model's\n" + format_pipeline(compiled.spec, rows))
    _write(text, args.output, [args.file], force=args.force)
    return 0


def cmd_audit_torch(args) -> int:
    from .torch_audit import audit, format_audit

    rows = audit(args.ranks, args.microbatches, _stage_cost_arg(args.costs))
    print(json.dumps(rows, indent=1) if args.json else format_audit(args.ranks, args.microbatches, rows), end="")
    return 0


def _stage_cost_arg(text: str):
    from .spec import StageCost

    try:
        values = [float(v) for v in text.split(",")]
        F, B, W = values[:3]
        FB = values[3] if len(values) > 3 else None
    except ValueError:
        raise UsageError(f"--costs takes F,B,W[,F&B] numbers, e.g. 1,2,1,3; got '{text}'") from None
    return StageCost(F, B, W, FB)


def cmd_run(args) -> int:
    """Start `torchrun` with one process per rank, each running `schedc.backends.torch`."""
    import socket
    import subprocess

    _source, specs = _load(args.file)
    [spec] = _select(specs, args.pipeline, single=True)
    nproc = args.nproc or spec.ranks
    if nproc != spec.ranks:
        raise UsageError(f"--nproc {nproc}, but the pipeline has ranks = {spec.ranks}: one process per rank")
    if not Path(args.model).is_file():
        raise UsageError(f"cannot read the model file '{args.model}'")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={nproc}",
               "--master-addr=127.0.0.1", f"--master-port={port}", "-m", "schedc.backends.torch",
               args.file, "--model", args.model, "--steps", str(args.steps), "--dtype", args.dtype,
               "--timeout", str(args.timeout)]
    command += ["--pipeline", spec.name] + (["--check"] if args.check else [])
    command += ["--trace", str(Path(args.trace).resolve())] if args.trace else []
    command += ["--device", args.device] if args.device else []
    if args.profile:
        return _profile(spec, args)
    print("schedc: " + " ".join(command[2:]), file=sys.stderr)
    return subprocess.run(command).returncode


def _profile(spec: PipelineSpec, args) -> int:
    import torch

    from .backends.torch.__main__ import load_model
    from .backends.torch.measure import format_cost_block, profile_stages

    model = load_model(args.model)
    rows = profile_stages(model, spec.num_stages, getattr(torch, args.dtype))
    print(f"# per-stage costs of {args.model} ({spec.num_stages} stages, {args.dtype}, this machine)")
    print(format_cost_block(rows))
    return 0


def _families(text: str) -> list[str]:
    families = [f.strip() for f in text.split(",") if f.strip()]
    unknown = [f for f in families if f not in FAMILIES]
    if unknown:
        raise UsageError(f"unknown schedule {', '.join(unknown)} (known: {', '.join(FAMILIES)})")
    return families


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="schedc", description="A compiler for pipeline-parallel "
                                     "training schedules (.sched files).")
    parser.add_argument("--version", action="version", version=f"schedc {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("compile", help="print the verified per-rank instruction lists")
    p.add_argument("file")
    p.add_argument("--pipeline", help="the pipeline to compile when the file has several")
    p.add_argument("--format", choices=("text", "json", "grid", "sched"), default="text",
                   help="text: one line per rank; json: the versioned JSON form; grid: a step x rank "
                   "table of compute ops; sched: a .sched pipeline with this plan as its order")
    p.add_argument("--dump", choices=("dag", "order"), help="print an intermediate value instead: "
                   "the dependency DAG, or the family's compute order before fusion and lowering")
    p.add_argument("-o", "--output", help="write here instead of standard output")
    p.add_argument("--force", action="store_true", help="overwrite an existing .sched output file")
    p.set_defaults(func=cmd_compile)

    p = sub.add_parser("simulate", help="predict makespan, bubble and per-rank busy/idle/memory")
    p.add_argument("file")
    p.add_argument("--pipeline")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser("check", help="verify files; exit 0 when all are fine, 1 otherwise")
    p.add_argument("files", nargs="+")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("compare", help="the same pipeline under several families, side by side")
    p.add_argument("file")
    p.add_argument("--pipeline")
    p.add_argument("--schedules", help=f"comma-separated families (default: all of {','.join(FAMILIES)})")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_compare)

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

    p = sub.add_parser("export", help="write a plan as PyTorch's schedule CSV")
    p.add_argument("file")
    p.add_argument("--to", choices=("torch-csv",), default="torch-csv")
    p.add_argument("-o", "--output", required=True, help="NAME.csv")
    p.add_argument("--pipeline")
    p.add_argument("--with-comms", action="store_true", help="include schedc's sends and receives "
                   "(PyTorch's compute_comms format); default: compute actions only")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("import", help="read PyTorch's schedule CSV, verify it, write a .sched")
    p.add_argument("file", help="a CSV: one row per rank of actions such as 0F1, 1I0, 0W0")
    p.add_argument("--placement", choices=("loop", "v"), required=True,
                   help="how PyTorch placed the stages: loop (stage s on rank s mod ranks) or v")
    p.add_argument("--ranks", type=int, help="expected number of ranks (rows)")
    p.add_argument("--microbatches", type=int, help="the number of microbatches (default: the "
                   "largest used, plus one)")
    p.add_argument("-o", "--output", help="NAME.sched (default: standard output)")
    p.add_argument("--force", action="store_true", help="overwrite an existing .sched output file")
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("audit-torch", help="verify and simulate PyTorch's built-in schedules next to schedc's")
    p.add_argument("--ranks", type=int, default=4)
    p.add_argument("--microbatches", type=int, default=8)
    p.add_argument("--costs", default="1,2,1", help="F,B,W[,F&B] per stage (default 1,2,1)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_audit_torch)

    p = sub.add_parser("run", help="execute the plan on a torch model under torchrun (gloo on CPU)")
    p.add_argument("file")
    p.add_argument("--model", required=True, help="a model file defining build_stages, loss_fn and "
                   "make_batch (see examples/models/mlp.py)")
    p.add_argument("--pipeline")
    p.add_argument("--nproc", type=int, help="processes (default: the pipeline's ranks)")
    p.add_argument("--steps", type=int, default=1)
    p.add_argument("--check", action="store_true", help="compare losses and every gradient with a "
                   "single-process run; prints the largest relative error and PASS/FAIL")
    p.add_argument("--dtype", choices=("float64", "float32"), default="float64")
    p.add_argument("--device", choices=("cpu", "cuda"), help="default: cuda (NCCL) when available, else cpu (gloo)")
    p.add_argument("--timeout", type=float, default=60, help="seconds before a stuck transfer fails")
    p.add_argument("--trace", help="write a Chrome trace of what really ran (last step) and compare "
                   "measured and simulated step time and idle")
    p.add_argument("--profile", action="store_true", help="measure the model's per-stage F, B, W, F&B "
                   "and print a cost block to paste into the .sched file (runs nothing distributed)")
    p.set_defaults(func=cmd_run)
    return parser


def _print_error(error: SchedError, path: str | None = None) -> None:
    source = getattr(error, "source", None)
    if source is None and path:
        try:
            source = SourceFile(path, Path(path).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError):
            source = None
    print(render_error(error, source), file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except SchedError as error:
        _print_error(error, getattr(args, "file", None))
        return 1
    except UsageError as error:
        print(f"schedc: error: {error}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
