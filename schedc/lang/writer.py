"""Write a spec (and optionally an order) back as .sched text that parses to the same spec, and
write any file whole (`write_whole`, the one way schedc replaces a file: the commands' outputs, the
torch backend's traces).

`format_pipeline(spec, rows)` is how a compiled plan becomes a hand-written order: every setting
is written out explicitly, so the text means the same whatever the defaults become.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from ..ir import Instr, Plan, format_plan_text
from .recompute import format_recompute
from .spec import PipelineSpec, StageCost

_COST_FIELDS = (("F", "forward"), ("B", "backward"), ("W", "weight"), ("F&B", "overlap"), ("comm", "comm"))


def _cost_items(cost: StageCost, base: StageCost | None = None) -> str:
    """`F = 1  B = 2 ...`: every set field, or (with `base`) those that differ from it. A stage
    that changes F or B always states its F&B (else the reader would derive one from the gain)."""
    items = []
    reshaped = base is not None and (cost.forward, cost.backward) != (base.forward, base.backward)
    for key, name in _COST_FIELDS:
        value = getattr(cost, name)
        same = base is not None and getattr(base, name) == value and not (key == "F&B" and reshaped)
        if value is None or same:
            continue
        items.append(f"{key} = {value:g}")
    return "  ".join(items)


def format_pipeline(spec: PipelineSpec, rows: tuple[tuple[Instr, ...], ...] | None = None) -> str:
    """A `pipeline` block for `spec`; with `rows`, `schedule = manual` and `order { rows }`."""
    base = spec.costs[0]
    lines = [f"pipeline {spec.name} {{",
             f"  ranks = {spec.ranks}",
             f"  microbatches = {spec.microbatches}",
             f"  placement = {spec.placement}"]
    if spec.placement == "interleaved":
        lines.append(f"  chunks = {spec.chunks}")
    lines += [f"  schedule = {'manual' if rows is not None else spec.schedule}",
              f"  split_backward = {str(spec.split_backward).lower()}",
              f"  overlap = {str(spec.overlap).lower()}",
              "  cost {", f"    {_cost_items(base)}"]
    lines += [f"    stage {s} {{ {_cost_items(c, base)} }}" for s, c in enumerate(spec.costs) if c != base]
    lines += ["  }", "  memory {", f"    activation = {spec.activations[0]:g}"]
    if spec.memory_limit is not None:
        lines.append(f"    limit = {spec.memory_limit:g}")
    lines += [f"    stage {s} {{ activation = {a:g} }}" for s, a in enumerate(spec.activations)
              if a != spec.activations[0]]
    for key, values in (("weight_grad", spec.weight_grad), ("parameters", spec.parameters)):
        lines += [f"    stage {s} {{ {key} = {v:g} }}" for s, v in enumerate(values)]
    lines.append("  }")
    lines += format_recompute(spec)
    if rows is not None:
        lines.append("  order {")
        lines += [f"    {line}" for line in format_plan_text(Plan(rows)).splitlines()]
        lines.append("  }")
    lines.append("}")
    return "\n".join(lines) + "\n"



def _offset(text: str, line: int, col: int) -> int:
    """The index in `text` of 1-based (line, col), lines counted at `\\n` as the parser does."""
    starts = [0] + [i + 1 for i, ch in enumerate(text) if ch == "\n"]
    return starts[line - 1] + col - 1


def replace_cost_block(text: str, pipeline, block: str) -> str:
    """`text` with `pipeline`'s (a PipelineAST of `text`) cost block replaced by `block`, or with
    `block` added before the pipeline's closing brace when it has none; everything else as written."""
    old = next((b for b in pipeline.blocks if b.kind == "cost"), None)
    if old is not None:
        start = _offset(text, old.span.line, old.span.col)
        end = _offset(text, old.span.end_line, old.span.end_col)
        return text[:start] + block.strip() + text[end:]
    end = _offset(text, pipeline.span.end_line, pipeline.span.end_col) - 1  # the closing brace
    indented = "\n".join("  " + line for line in block.strip().splitlines())
    before = text[:end].rstrip(" \t")
    separator = "" if before.endswith("\n") else "\n"
    return before + separator + indented + "\n" + text[end:]


def write_whole(path: Path, data: bytes) -> None:
    """Write `data` to `path` through a temporary file in the same folder, renamed over `path` once
    complete (with the existing file's permissions, else a plain new file's): a failure (full disk,
    no permission, a killed process) leaves any existing file as it was and no temporary behind.
    Raises the OSError."""
    temp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp, _mode_for(path))
        os.replace(temp, path)
    except BaseException:
        if temp is not None and os.path.exists(temp):
            os.unlink(temp)
        raise


def _mode_for(path: Path) -> int:
    """The existing file's permissions, else what a plain `open(path, "w")` would give."""
    try:
        return path.stat().st_mode & 0o7777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask
