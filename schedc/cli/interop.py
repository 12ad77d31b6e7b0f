"""`schedc export`, `import` and `audit-torch`: PyTorch's schedule CSV in and out, and PyTorch's
built-in schedules verified and simulated beside schedc's."""

from __future__ import annotations

import json
import re
from pathlib import Path

from ..compiler import compile_spec
from ..errors import SchedError, SourceFile
from ..backends.torch.options import positive_int
from ..lang.values import MAX_NUMBER, MAX_OPS
from ..lang.writer import format_pipeline
from .common import UsageError, check_folder, load_specs, output_format, read_input, select_pipelines, write_output


def cmd_export(args) -> int:
    from ..interop.torch_csv import write_torch_csv

    output_format(args.output, None, ("csv",), "a PyTorch schedule")
    _source, specs = load_specs(args.file)
    [spec] = select_pipelines(specs, args.pipeline, single=True)
    compiled = compile_spec(spec)
    write_output(write_torch_csv(compiled.spec, compiled.plan, args.with_comms), args.output, [args.file])
    return 0


def _read_csv(path: str, placement: str, ranks: int | None, name: str, microbatches: int | None):
    from ..interop.torch_csv import read_torch_csv

    text = read_input(path)
    try:
        return read_torch_csv(text, path, placement, ranks, name=name, microbatches=microbatches)
    except SchedError as error:
        error.source = SourceFile(path, text)
        raise


def cmd_import(args) -> int:
    check_folder(args.output)
    spec = _read_csv(args.file, args.placement, args.ranks,
                     re.sub(r"\W", "_", Path(args.file).stem) or "imported", args.microbatches)
    try:
        compiled = compile_spec(spec)
    except SchedError as error:
        error.source = SourceFile(args.file, read_input(args.file))
        raise
    rows = tuple(tuple(x for x in row if x.is_compute) for row in compiled.plan.ranks)
    text = (f"# imported from {args.file} (PyTorch schedule CSV, placement {args.placement}); "
            "set the costs below to your model's\n" + format_pipeline(compiled.spec, rows))
    write_output(text, args.output, [args.file], force=args.force)
    return 0


def cmd_audit_torch(args) -> int:
    from ..interop.torch_audit import audit, format_audit
    from .run import require_torch

    cost = _stage_cost_arg(args.costs)
    ops = args.ranks * AUDIT_STAGES_PER_RANK * args.microbatches * 3
    if ops > MAX_OPS:
        raise UsageError(f"--ranks {args.ranks} --microbatches {args.microbatches}: PyTorch's "
                         f"interleaved schedules would have {ops:,} compute ops; schedc takes up to "
                         f"{MAX_OPS:,}: is a number mistyped?")
    require_torch()
    rows = audit(args.ranks, args.microbatches, cost)
    print(json.dumps(rows, indent=1) if args.json else format_audit(args.ranks, args.microbatches, rows), end="")
    return 0


AUDIT_STAGES_PER_RANK = 2  # the most stages per rank among PyTorch's schedules (interleaved, V)


def _stage_cost_arg(text: str):
    """`--costs F,B,W[,F&B]` as a StageCost, held to the rules a cost block follows."""
    from ..lang.spec import StageCost

    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) not in (3, 4) or not all(0 <= v <= MAX_NUMBER for v in values):
        raise UsageError(f"--costs takes 3 or 4 numbers F,B,W[,F&B] between 0 and {MAX_NUMBER:g}, "
                         f"e.g. 1,2,1,2.5; got '{text}'")
    F, B, W = values[:3]
    if F <= 0 or B <= 0:
        raise UsageError(f"--costs {text}: F and B must be more than 0")
    if W > B:
        raise UsageError(f"--costs {text}: W ({W:g}) is part of the backward B ({B:g}), so W <= B")
    FB = values[3] if len(values) > 3 else None
    if FB is not None and not max(F, B) <= FB <= F + B:
        raise UsageError(f"--costs {text}: an overlapped F&B pair takes at least the longer of F and B "
                         f"and at most F + B: between {max(F, B):g} and {F + B:g}; got {FB:g}")
    return StageCost(F, B, W, FB)


def register(sub) -> None:
    """Add export, import and audit-torch to the `schedc` parser's subcommands."""
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
    p.add_argument("--ranks", type=positive_int, help="expected number of ranks (rows)")
    p.add_argument("--microbatches", type=positive_int, help="the number of microbatches (default: the "
                   "largest used, plus one)")
    p.add_argument("-o", "--output", help="NAME.sched (default: standard output)")
    p.add_argument("--force", action="store_true", help="overwrite an existing .sched output file")
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("audit-torch", help="verify and simulate PyTorch's built-in schedules next to schedc's")
    p.add_argument("--ranks", type=positive_int, default=4)
    p.add_argument("--microbatches", type=positive_int, default=8)
    p.add_argument("--costs", default="1,2,1", help="F,B,W[,F&B] per stage (default 1,2,1)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_audit_torch)
