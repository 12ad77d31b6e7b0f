"""Helpers shared by the schedule families: op constructors and a per-rank program builder."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import Diagnostic, Note, SchedError, at
from ..ir import Instr, OpKind
from ..lang.spec import PipelineSpec

Chunk = tuple[int, int]  # (direction, stage)


def op(kind: OpKind, chunk: Chunk, microbatch: int) -> Instr:
    return Instr.compute(kind, chunk[0], chunk[1], microbatch)


def full_backward(spec: PipelineSpec, chunk: Chunk, microbatch: int) -> list[Instr]:
    """A whole backward as the pipeline writes it: `B`, or `I` then `W` when the backward is split."""
    if spec.split_backward:
        return [op(OpKind.I, chunk, microbatch), op(OpKind.W, chunk, microbatch)]
    return [op(OpKind.B, chunk, microbatch)]


def constraint_error(spec: PipelineSpec, message: str, key: str) -> SchedError:
    """A family constraint that the pipeline breaks, located at the setting that breaks it."""
    span = spec.source.span(key) or spec.source.span("schedule") or spec.source.pipeline
    notes = []
    if key != "schedule" and spec.source.span("schedule"):
        notes.append(Note(f"schedule = {spec.schedule} chosen here", spec.source.span("schedule")))
    return SchedError([Diagnostic(f"{spec.schedule}: {message}", span, tuple(notes))])


def require_placement(spec: PipelineSpec, placement: str) -> None:
    if spec.placement != placement:
        raise constraint_error(spec, f"needs placement = {placement}, but placement = "
                               f"{spec.placement}{at(spec.source.span('placement'))}", "placement")


def require_split(spec: PipelineSpec) -> None:
    if not spec.split_backward:
        raise constraint_error(spec, "splits the backward into I and W; remove "
                               "`split_backward = false`", "split_backward")


@dataclass
class RankProgram:
    """Builds one rank's compute order the way DualPipe and ZB-V describe theirs: per chunk and
    op kind, microbatches are taken in order 0, 1, 2, ...; W's come first-in first-out from the
    I's that were split off."""

    spec: PipelineSpec
    ops: list[Instr] = field(default_factory=list)
    pairs: set[tuple[Instr, Instr]] = field(default_factory=set)
    next_mb: dict[tuple[Chunk, str], int] = field(default_factory=dict)
    pending_w: list[Instr] = field(default_factory=list)

    def _take(self, chunk: Chunk, counter: str) -> int:
        mb = self.next_mb.get((chunk, counter), 0)
        self.next_mb[(chunk, counter)] = mb + 1
        return mb

    def forward(self, chunk: Chunk) -> Instr:
        instr = op(OpKind.F, chunk, self._take(chunk, "F"))
        self.ops.append(instr)
        return instr

    def backward(self, chunk: Chunk) -> Instr:
        """A full backward: one `B` instruction (I and W together)."""
        instr = op(OpKind.B, chunk, self._take(chunk, "B"))
        self.ops.append(instr)
        return instr

    def input_grad(self, chunk: Chunk, weight: str = "queue") -> Instr:
        """An `I`; its `W` is queued (`"queue"`), appended right away (`"now"`), or left to the
        caller (`"caller"`)."""
        instr = op(OpKind.I, chunk, self._take(chunk, "B"))
        self.ops.append(instr)
        if weight == "now":
            self.ops.append(instr.with_kind(OpKind.W))
        elif weight == "queue":
            self.pending_w.append(instr.with_kind(OpKind.W))
        return instr

    def count(self, chunk: Chunk, counter: str) -> int:
        """How many microbatches of `chunk` have had their `counter` op ("F" or "B") so far."""
        return self.next_mb.get((chunk, counter), 0)

    def weight(self) -> None:
        """The oldest pending `W`, if any."""
        if self.pending_w:
            self.ops.append(self.pending_w.pop(0))

    def overlapped(self, forward_chunk: Chunk, backward_chunk: Chunk) -> None:
        """A forward and a full backward that the family wants run as one overlapped pair."""
        self.pairs.add((self.forward(forward_chunk), self.backward(backward_chunk)))
