"""Audit PyTorch's built-in pipeline schedules with schedc: generate each through the installed
torch, import it, verify it, simulate it under schedc's cost model, and set it beside schedc's
own plan for the same family (`schedc audit-torch`)."""

from __future__ import annotations

import warnings

from ..compiler import compile_spec
from ..errors import Diagnostic, SchedError
from ..simulate import simulate
from ..lang.spec import FAMILY_PLACEMENT, OVERLAP_FAMILIES, SPLIT_FAMILIES, PipelineSpec, StageCost
from .torch_csv import split_cells, parse_action, read_torch_csv

# PyTorch class name, stages per rank, its placement, and schedc's family for the same schedule.
TORCH_SCHEDULES = (
    ("GPipe", 1, "loop", "gpipe"),
    ("1F1B", 1, "loop", "1f1b"),
    ("Interleaved1F1B", 2, "loop", "interleaved"),
    ("LoopedBFS", 2, "loop", None),
    ("InterleavedZeroBubble", 2, "loop", None),
    ("ZBVZeroBubble", 2, "v", "zbv"),
    ("DualPipeV", 2, "v", "dualpipev"),
)


def torch_schedule_csv(name: str, ranks: int, microbatches: int, stages_per_rank: int) -> str:
    """PyTorch's compute-only schedule for `name` as CSV text (through the installed torch)."""
    try:
        from torch.distributed.pipelining._schedule_visualizer import get_schedule_ops
    except ImportError:
        raise SchedError([Diagnostic("audit-torch needs torch: `pip install torch` (any build; "
                                     "`pip install torch==2.13.0` is the CPU one here)")]) from None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ops = get_schedule_ops(name, ranks, microbatches, num_stages_per_rank=stages_per_rank)
    return "\n".join(",".join("" if a is None else str(a) for a in row) for row in ops) + "\n"


def _measure(spec: PipelineSpec) -> dict:
    compiled = compile_spec(spec)
    timeline = simulate(compiled.spec, compiled.dag, compiled.plan)
    return {"makespan": timeline.makespan, "bubble": timeline.bubble,
            "peak_activations": max(r.peak_activations for r in timeline.ranks), "problem": None,
            "order": [[str(x) for x in row if x.is_compute] for row in compiled.plan.ranks]}


def _family_spec(family: str, ranks: int, microbatches: int, chunks: int, cost: StageCost) -> PipelineSpec:
    placement = FAMILY_PLACEMENT[family]
    stages = ranks * chunks
    return PipelineSpec(family, ranks, microbatches, family, placement, chunks, family in SPLIT_FAMILIES,
                        family in OVERLAP_FAMILIES, (cost,) * stages, (1,) * stages)


def audit(ranks: int, microbatches: int, cost: StageCost) -> list[dict]:
    """One row per PyTorch schedule: its figures (or the problem schedc found) and schedc's."""
    rows = []
    for name, per_rank, placement, family in TORCH_SCHEDULES:
        row = {"torch": name, "family": family, "torch_result": None, "schedc_result": None, "first_difference": None}
        try:
            text = torch_schedule_csv(name, ranks, microbatches, per_rank)
            spec = read_torch_csv(text, f"<torch {name}>", placement, ranks, cost, name, microbatches)
            row["torch_result"] = _measure(spec)
        except SchedError as error:  # keep its order as written, to show where it departs
            row["torch_result"] = {"problem": error.diagnostics[0].message, "order": _order_as_written(text)}
        except Exception as error:  # PyTorch itself refused this size
            row["torch_result"] = {"problem": f"PyTorch could not generate it: {error}"}
        if family:
            try:
                row["schedc_result"] = _measure(_family_spec(family, ranks, microbatches, per_rank, cost))
            except SchedError as error:
                row["schedc_result"] = {"problem": error.diagnostics[0].message}
        row["first_difference"] = _first_difference(row["torch_result"], row["schedc_result"])
        rows.append(row)
    return rows


def _order_as_written(text: str) -> list[list[str]] | None:
    """Each rank's compute ops in a PyTorch CSV, unchecked (for a schedule schedc refuses)."""
    try:
        return [[str(x) for x in (parse_action(cell, None) for cell, _col in split_cells(line)) if x is not None]
                for line in text.splitlines() if line.strip()]
    except SchedError:
        return None


def _first_difference(theirs: dict | None, ours: dict | None) -> str | None:
    if not theirs or not ours or not theirs.get("order") or not ours.get("order"):
        return None
    for rank, (a, b) in enumerate(zip(theirs["order"], ours["order"])):
        for step, (x, y) in enumerate(zip(a, b)):
            if x != y:
                return f"rank {rank}, step {step}: torch {x}, schedc {y}"
        if len(a) != len(b):
            return f"rank {rank}: torch has {len(a)} ops, schedc {len(b)}"
    return "identical"


def format_audit(ranks: int, microbatches: int, rows: list[dict]) -> str:
    lines = [f"PyTorch's schedules on {ranks} ranks x {microbatches} microbatches, verified and "
             "simulated by schedc, beside schedc's plan for the same family",
             f"{'torch schedule':<22} {'makespan':>9} {'bubble':>7} {'peak':>5}   {'schedc':<12} "
             f"{'makespan':>9} {'bubble':>7} {'peak':>5}  same order?"]
    for row in rows:
        t, s = row["torch_result"], row["schedc_result"]
        left = (f"{t['makespan']:>9g} {t['bubble']:>7g} {t['peak_activations']:>5g}" if not t.get("problem")
                else f"{'FAILS':>9} {'':>7} {'':>5}")
        right = ("-" if not s else f"{s['makespan']:>9g} {s['bubble']:>7g} {s['peak_activations']:>5g}"
                 if not s.get("problem") else f"{'FAILS':>9}")
        lines.append(f"{row['torch']:<22} {left}   {row['family'] or '-':<12} {right:>23}  "
                     f"{row['first_difference'] or '-'}")
    for row in rows:
        for side in ("torch_result", "schedc_result"):
            result = row[side]
            if result and result.get("problem"):
                who = row["torch"] if side == "torch_result" else row["family"]
                lines.append(f"  {who}: {result['problem']}")
    return "\n".join(lines) + "\n"
