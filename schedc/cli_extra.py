"""Commands beyond compiling: pictures (viz, trace, dag) and torch (export, import, audit-torch, run)."""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from .cli_common import (UsageError, _compiled_timeline, _families, _load, _output_format,
                         _select, _write)
from .compiler import compile_spec, with_family
from .errors import SchedError, SourceFile
from .spec import PipelineSpec
from .writer import format_pipeline


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

    from .launch import device_problem, rank_arguments, run_torchrun

    _source, specs = _load(args.file)
    [spec] = _select(specs, args.pipeline, single=True)
    nproc = args.nproc or spec.ranks
    if nproc != spec.ranks:
        raise UsageError(f"--nproc {nproc}, but the pipeline has ranks = {spec.ranks}: one process per rank")
    if not Path(args.model).is_file():
        raise UsageError(f"cannot read the model file '{args.model}'")
    problem = None if args.profile else device_problem(nproc, args.device, args.comm)
    if problem:
        raise UsageError(problem)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for_ranks = argparse.Namespace(**{**vars(args), "trace": args.trace and str(Path(args.trace).resolve())})
    command = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={nproc}",
               "--master-addr=127.0.0.1", f"--master-port={port}", "-m", "schedc.backends.torch",
               args.file, "--model", args.model, "--pipeline", spec.name, *rank_arguments(for_ranks)]
    if args.profile:
        return _profile(spec, args)
    print("schedc: " + " ".join(command[2:]), file=sys.stderr)
    return run_torchrun(command)


def _profile(spec: PipelineSpec, args) -> int:
    import torch

    from .backends.torch.__main__ import load_model
    from .backends.torch.measure import format_cost_block, profile_stages

    model = load_model(args.model)
    rows = profile_stages(model, spec.num_stages, getattr(torch, args.dtype))
    print(f"# per-stage costs of {args.model} ({spec.num_stages} stages, {args.dtype}, this machine)")
    print(format_cost_block(rows))
    return 0
