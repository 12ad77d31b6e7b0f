"""PyTorch's pipeline schedule CSV (`torch.distributed.pipelining`): read it and write it.

PyTorch keeps a schedule as one row per rank of action cells: `0F1` (stage 0 forward of
microbatch 1), `2I3`, `1W0`, `0B2` (full backward), `(0F3;3B1)OVERLAP_F_B`, and in the lowered
form `0SEND_F1`, `1RECV_F1`, `1SEND_B1`, `0RECV_B1`; an empty cell is an idle step. Stages are
numbered globally and placed `loop` (stage s on rank s mod ranks) or `v`.

Reading keeps each cell's place, so the verifier's problems are reported at `plan.csv:row:col`.
PyTorch's communication actions are dropped on reading (its RECV posts a receive and its compute
waits, while schedc's RECV is the wait): schedc lowers communication itself. Writing: compute only,
or with schedc's sends and receives.
"""

from __future__ import annotations

import re
from ..errors import Diagnostic, SchedError, Span
from ..ir import Instr, OpKind, Plan
from ..lang.spec import PipelineSpec, SpecSource, StageCost
from ..lang.syntax import bounded_int, shorten
from ..lang.values import MAX_OPS, check_op_budget

PLACEMENTS = {"loop": "interleaved", "v": "v"}

# The torch releases whose private `_PipelineScheduleRuntime` runs exported CSVs (tested); the one
# place this range is written down.
TORCH_RUNTIME_RANGE = ((2, 6), (2, 14))


def torch_runtime_supported() -> tuple[bool, str]:
    """Whether the installed torch's pipelining runtime is in TORCH_RUNTIME_RANGE, and why not."""
    try:
        import torch
    except ImportError:
        return False, "torch is not installed"
    version = tuple(int(x) for x in re.findall(r"\d+", torch.__version__)[:2])
    low, high = TORCH_RUNTIME_RANGE
    if not low <= version <= high:
        return False, (f"torch {torch.__version__} is outside the tested range "
                       f"{low[0]}.{low[1]}-{high[0]}.{high[1]} of PyTorch's private pipelining runtime")
    return True, ""
_ACTION = re.compile(r"(\d+)(F|I|B|W|SEND_F|RECV_F|SEND_B|RECV_B|UNSHARD|RESHARD|REDUCE_GRAD)(\d*)")
_OVERLAP = re.compile(r"\((.*)\)OVERLAP_F_B")
_SKIPPED = {"SEND_F", "RECV_F", "SEND_B", "RECV_B", "UNSHARD", "RESHARD", "REDUCE_GRAD"}


def split_cells(line: str) -> list[tuple[str, int]]:
    """(text, 1-based column) of each comma-separated cell; quotes around a cell are removed."""
    cells, col = [], 1
    for raw in line.split(","):
        text = raw.strip().strip('"').strip()
        offset = len(raw) - len(raw.lstrip()) + (1 if raw.lstrip().startswith('"') else 0)
        cells.append((text, col + offset))
        col += len(raw) + 1
    return cells


def parse_action(text: str, span: Span) -> Instr | None:
    """One cell as an `Instr` (direction 0); None for an idle cell or a dropped comm action."""
    if not text:
        return None
    overlap = _OVERLAP.fullmatch(text)
    if overlap:
        parts = [parse_action(t.strip(), span) for t in overlap.group(1).split(";")]
        if len(parts) != 2 or parts[0] is None or parts[1] is None or parts[0].kind is not OpKind.F:
            raise SchedError([Diagnostic(f"'{shorten(text)}': an OVERLAP_F_B holds one forward and one "
                                         "backward, as in (0F3;3B1)OVERLAP_F_B", span)])
        return Instr.overlap(parts[0], parts[1])
    match = _ACTION.fullmatch(text)
    if not match:
        raise SchedError([Diagnostic(f"unknown action '{shorten(text)}'; PyTorch actions look like 0F1, 2I3, "
                                     "1W0, 0B2, (0F3;3B1)OVERLAP_F_B or 0SEND_F1", span)])
    stage, kind, microbatch = match.groups()
    if kind in _SKIPPED:
        return None
    if not microbatch:
        raise SchedError([Diagnostic(f"'{shorten(text)}' has no microbatch number", span)])
    return Instr(OpKind(kind), 0, bounded_int(stage, span, f"in '{shorten(text)}', the stage"),
                 bounded_int(microbatch, span, f"in '{shorten(text)}', the microbatch"))


def read_torch_csv(text: str, file: str, placement: str, ranks: int | None = None,
                   costs: StageCost = StageCost(), name: str = "imported",
                   microbatches: int | None = None) -> PipelineSpec:
    """A hand-written-order spec from PyTorch CSV text; the order's tokens keep their cells'
    places for error messages. `placement` is `loop` or `v`; `microbatches` (default: the
    largest one used, plus one) is checked when given."""
    if placement not in PLACEMENTS:
        raise SchedError([Diagnostic(f"placement '{placement}' is not one PyTorch uses; choose loop or v")])
    lines = [line.rstrip("\r") for line in text.split("\n")]  # rows as the error display counts them
    while lines and not lines[-1].strip():
        lines.pop()
    if ranks is not None and len(lines) != ranks:
        where = Span(file, max(len(lines), 1), 1, max(len(lines), 1), 2)
        raise SchedError([Diagnostic(f"the CSV has {len(lines)} rows, but ranks = {ranks}: one row "
                                     "per rank", where)])
    rows, tokens = [], []
    for r, line in enumerate(lines):
        row = []
        for text_cell, col in split_cells(line):
            span = Span(file, r + 1, col, r + 1, col + max(len(text_cell), 1))
            instr = parse_action(text_cell, span)
            if instr is not None and len(tokens) >= MAX_OPS:
                check_op_budget(len(tokens) + 1, span, "this CSV")
            if instr is not None:
                tokens.append(((r, len(row)), span))
                row.append(instr)
        rows.append(tuple(row))
    return _spec_for(rows, tokens, file, placement, costs, name, microbatches)


def _spec_for(rows, tokens, file, placement, costs, name, microbatches) -> PipelineSpec:
    ops = [p for row in rows for x in row for p in (x.parts or (x,))]
    if not ops:
        raise SchedError([Diagnostic("no compute action in this CSV", Span(file, 1, 1, 1, 2))])
    if microbatches is not None:
        _check_microbatches(rows, dict(tokens), microbatches)
    p = len(rows)
    stages = max(op.stage for op in ops) + 1
    chunks = 2 if placement == "v" else max(1, -(-stages // p))
    kind = PLACEMENTS[placement] if chunks > 1 else "linear"
    split = any(op.kind in (OpKind.I, OpKind.W) for op in ops)
    count = microbatches if microbatches is not None else max(op.microbatch for op in ops) + 1
    check_op_budget(max(stages, p * chunks) * count * (3 if split else 2), _largest_cell(rows, tokens),
                    "the pipeline this CSV describes")
    source = SpecSource(file, Span(file, 1, 1, 1, 2), (), tuple(tokens),
                        tuple((r, Span(file, r + 1, 1, r + 1, 2)) for r in range(p)))
    spec = PipelineSpec(name, p, count, "manual", kind, chunks, split,
                        any(x.kind is OpKind.OVERLAP for row in rows for x in row),
                        (costs,) * (p * chunks), (1,) * (p * chunks), None, tuple(rows), source)
    _check_stages(spec, tokens)
    return spec


def _largest_cell(rows, tokens) -> Span:
    """The cell whose stage or microbatch number is the largest (the likely typo)."""
    spans, best, where = dict(tokens), -1, None
    for r, row in enumerate(rows):
        for i, instr in enumerate(row):
            largest = max(max(op.stage, op.microbatch) for op in (instr.parts or (instr,)))
            if largest > best:
                best, where = largest, spans[(r, i)]
    return where


def _check_microbatches(rows, spans, microbatches: int) -> None:
    for r, row in enumerate(rows):
        for i, instr in enumerate(row):
            for op in instr.parts or (instr,):
                if op.microbatch >= microbatches:
                    raise SchedError([Diagnostic(f"microbatch {op.microbatch} used on rank {r}, but "
                                                 f"there are {microbatches} microbatches (0..{microbatches - 1})",
                                                 spans[(r, i)])])


def _check_stages(spec: PipelineSpec, tokens) -> None:
    spans = dict(tokens)
    for r, row in enumerate(spec.order):
        for i, instr in enumerate(row):
            for op in instr.parts or (instr,):
                if op.stage >= spec.num_stages:
                    raise SchedError([Diagnostic(f"stage {op.stage} does not exist with {spec.ranks} "
                                                 f"ranks and placement {spec.placement}", spans[(r, i)])])
                home = spec.rank_of(0, op.stage)
                if home != r:
                    raise SchedError([Diagnostic(f"stage {op.stage} is on row {r + 1} (rank {r}), but "
                                                 f"with placement {spec.placement} it lives on rank {home}",
                                                 spans[(r, i)])])


def torch_action(instr: Instr) -> str:
    """The PyTorch action string of one schedc instruction (direction 0 only)."""
    if instr.kind is OpKind.OVERLAP:
        return f"({';'.join(torch_action(p) for p in instr.parts)})OVERLAP_F_B"
    return f"{instr.stage}{instr.kind.value}{instr.microbatch}"


def exportable(spec: PipelineSpec) -> str | None:
    """Why `spec` cannot be written as PyTorch CSV, or None when it can."""
    if spec.placement == "bidirectional":
        return ("a bidirectional pipeline (DualPipe) holds two replicas of every stage, which "
                "PyTorch's runtime has no way to express; export dualpipev (its V-placement "
                "version), or gpipe, 1f1b, interleaved, zb-h1, zb-h2, zbv or a linear/V/loop "
                "hand-written order")
    if any(c != "none" for c in spec.recompute):
        return ("its plan recomputes (R ops), and PyTorch's schedule CSV has no recompute action, "
                "so a runtime reading it would hold every activation instead; export it with "
                "`recompute = none` (and wrap the stages in torch.utils.checkpoint yourself)")
    return None


def write_torch_csv(spec: PipelineSpec, plan: Plan, with_comms: bool = False) -> str:
    """One row per rank; compute actions only, or with schedc's sends and receives."""
    why = exportable(spec)
    if why:
        raise SchedError([Diagnostic(f"cannot export {spec.schedule} to PyTorch CSV: {why}",
                                     spec.source.span("schedule") or spec.source.pipeline)])
    lines = []
    for row in plan.ranks:
        cells = [torch_action(x) for x in row if x.is_compute or (with_comms and x.kind is not OpKind.GRAD_SUM)]
        lines.append(",".join(cells))
    return "\n".join(lines) + "\n"

