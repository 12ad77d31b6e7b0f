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
from ..overlap import Chunk
from .chunk import DEFAULT_COMMUNICATION, derive_chunk, stage_chunks
from .recompute import format_recompute
from .spec import PipelineSpec, StageCost

_COST_FIELDS = (("F", "forward"), ("B", "backward"), ("W", "weight"), ("F&B", "overlap"), ("comm", "comm"),
                ("activation_bytes", "activation_bytes"))


def _cost_items(cost: StageCost, base: StageCost | None = None, linked: bool = False,
                chunked: bool = False) -> str:
    """`F = 1  B = 2 ...`: every set field, or (with `base`) those that differ from it. A stage
    that changes F or B always states its F&B (else the reader would derive one from the gain).
    With a link, the transfer's size instead of its time (comm); without, no size; with a chunk,
    neither F, B, W nor F&B (the chunk derives them)."""
    items = []
    reshaped = base is not None and (cost.forward, cost.backward) != (base.forward, base.backward)
    for key, name in _COST_FIELDS[4 if chunked else 0:]:
        if key == ("comm" if linked else "activation_bytes"):
            continue
        value = getattr(cost, name)
        same = base is not None and getattr(base, name) == value and not (key == "F&B" and reshaped)
        if value is None or same:
            continue
        items.append(f"{key} = {value:g}" if float(f"{value:g}") == value else f"{key} = {value!r}")
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
              "  cost {"]
    lines += _cost_lines(spec)
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


def _cost_lines(spec: PipelineSpec) -> list[str]:
    """The cost block's inside: the block's items, its chunk and link, each stage's differences."""
    base, linked, chunks = spec.costs[0], bool(spec.link), _written_chunks(spec)
    lines = [f"    {_cost_items(base, linked=linked, chunked=bool(chunks))}"]
    if chunks:
        lines.append(f"    {_chunk_text(chunks[0])}")
    if spec.link:
        lines.append(f"    link {{ bandwidth = {spec.link.bandwidth!r}  latency = {spec.link.latency!r}  "
                     f"comm_share = {spec.link.comm_share!r} }}")
    for stage, cost in enumerate(spec.costs):
        own = [_chunk_text(chunks[stage])] if chunks and chunks[stage] != chunks[0] else []
        own += [_cost_items(cost, base, linked, bool(chunks))] if cost != base else []
        if any(own):
            lines.append(f"    stage {stage} {{ {'  '.join(x for x in own if x)} }}")
    return [line for line in lines if line.strip()]


def _written_chunks(spec: PipelineSpec) -> tuple[Chunk, ...]:
    """Each stage's chunk when every stage's costs are what its chunk derives (a file's chunks,
    not re-cut for another family) and each can be written back; else () (costs as numbers)."""
    chunks = stage_chunks(spec)
    if len(chunks) != spec.num_stages or not all(chunks):
        return ()
    for chunk, cost in zip(chunks, spec.costs):
        derived = derive_chunk(chunk)
        figures = (derived.F, derived.B, derived.W, derived.FB)
        if any(float(f"{x:.9g}") != y for x, y in zip(figures, (cost.forward, cost.backward, cost.weight,
                                                               cost.overlap_cost))):
            return ()
        if not any(p.comm for p in chunk.forward + chunk.backward) and any(
                p.name in DEFAULT_COMMUNICATION for p in chunk.forward + chunk.backward):
            return ()  # `communication` cannot be written empty
    return chunks


def _chunk_text(chunk: Chunk) -> str:
    """`chunk { layers = 4  F { attention = 4.1 ... } ... }`, canonical (parts in their order)."""
    sides = (("F", chunk.forward), ("B", chunk.backward), ("W", chunk.weight))
    items = [f"layers = {chunk.layers}"] + [f"{side} {{ {'  '.join(f'{p.name} = {p.duration!r}' for p in parts)} }}"
                                           for side, parts in sides if parts]
    comm = dict.fromkeys(p.name for p in chunk.forward + chunk.backward if p.comm)
    if comm:
        items.append(f"communication = {', '.join(comm)}")
    return f"chunk {{ {'  '.join(items)}  comm_share = {chunk.comm_share!r} }}"


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
