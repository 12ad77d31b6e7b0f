"""The values of the overlap model: a chunk's parts as the user writes them (`Part`, `Chunk`), and
the same chunk as flat integer-indexed arrays for the evaluator and the search (`PairProblem`).

Dependencies (the model's rules, stated once here):
- forward parts run in the written order within a layer, layer after layer (0 .. layers-1);
- B (input-grad) parts run in the written order within a layer, layers in reverse (layers-1 .. 0);
- each W (weight-grad) part runs after the B part of the same name in the same layer; a W part
  whose name has no B part runs after that layer's last B part. W parts are compute, and nothing
  waits for them.
So every part has at most one predecessor: the forward and the B parts are two chains, and each W
part hangs off one B part.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import Diagnostic, SchedError

COMPUTE, COMM = 0, 1  # lane numbers
LANE_NAMES = ("compute", "comm")


@dataclass(frozen=True, slots=True)
class Part:
    """One part of a layer's work: its `name` (attention, dispatch, ...), its `duration` (alone,
    at full speed, in the cost block's time unit) and whether it uses the network (`comm`: it runs
    on the communication lane, else on the compute lane)."""

    name: str
    duration: float
    comm: bool = False


@dataclass(frozen=True, slots=True)
class Chunk:
    """One stage's chunk, per layer: `forward` parts, `backward` (input-grad, B) parts, `weight`
    (weight-grad, W) parts, repeated for `layers` layers. `comm_share` s in [0, 1): while any
    communication part runs, compute progresses at rate 1 - s (the SMs communication takes)."""

    layers: int
    forward: tuple[Part, ...]
    backward: tuple[Part, ...]
    weight: tuple[Part, ...] = ()
    comm_share: float = 0.0


@dataclass(frozen=True, slots=True)
class PairProblem:
    """One forward chunk and one backward chunk (of different microbatches) as flat arrays over
    part ids 0 .. n-1: `labels[i]` (`F0.attention`, `B3.combine`, `W3.mlp`), `lane[i]` (COMPUTE or
    COMM), `work[i]` (duration), `pred[i]` (the one part it waits for, -1 for none).
    `forward` and `backward` are the two chains' ids in dependency order; `weight` the W ids sorted
    by the position of their B part in the backward chain (the order they become ready), ties in
    written order. `share` is the chunk's comm_share."""

    labels: tuple[str, ...]
    lane: tuple[int, ...]
    work: tuple[float, ...]
    pred: tuple[int, ...]
    forward: tuple[int, ...]
    backward: tuple[int, ...]
    weight: tuple[int, ...]
    share: float

    def index(self) -> dict[str, int]:
        """label -> part id."""
        return {label: i for i, label in enumerate(self.labels)}


def _bad(message: str) -> SchedError:
    return SchedError([Diagnostic(message)])


def _check_parts(kind: str, parts: tuple[Part, ...]) -> None:
    names = [p.name for p in parts]
    for p in parts:
        if not isinstance(p.name, str) or not p.name or "." in p.name or any(c.isspace() for c in p.name):
            raise _bad(f"{kind} part name {p.name!r} must be a non-empty word without dots or spaces")
        if not isinstance(p.duration, (int, float)) or not math.isfinite(p.duration) or p.duration < 0:
            raise _bad(f"{kind} part {p.name}: duration {p.duration!r} must be a finite number >= 0")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise _bad(f"{kind} parts are named twice: {', '.join(repeated)}")


def check_chunk(chunk: Chunk) -> None:
    """Raise `SchedError` when the chunk breaks the model's rules: at least one layer, at least one
    forward and one B part, names unique within F, B and W, durations finite and >= 0, W parts
    compute, comm_share in [0, 1)."""
    if not isinstance(chunk.layers, int) or chunk.layers < 1:
        raise _bad(f"layers = {chunk.layers!r} must be a whole number >= 1")
    if not chunk.forward or not chunk.backward:
        raise _bad("a chunk needs at least one forward part and one backward (B) part")
    for kind, parts in (("F", chunk.forward), ("B", chunk.backward), ("W", chunk.weight)):
        _check_parts(kind, parts)
    comm_w = [p.name for p in chunk.weight if p.comm]
    if comm_w:
        raise _bad(f"W parts are compute, but {', '.join(comm_w)} is marked as communication")
    s = chunk.comm_share
    if not isinstance(s, (int, float)) or not math.isfinite(s) or not 0 <= s < 1:
        raise _bad(f"comm_share = {s!r} must lie in [0, 1)")


def label(kind: str, layer: int, name: str) -> str:
    """A part's label: kind (F, B or W), layer, part name, as `B3.combine`."""
    return f"{kind}{layer}.{name}"


def build_problem(chunk: Chunk) -> PairProblem:
    """The pair of `chunk` (one forward chunk, one backward chunk) as flat arrays; checks the chunk
    first (`check_chunk`)."""
    check_chunk(chunk)
    labels: list[str] = []
    lane: list[int] = []
    work: list[float] = []
    pred: list[int] = []

    def add(kind: str, layer: int, part: Part, before: int) -> int:
        labels.append(label(kind, layer, part.name))
        lane.append(COMM if part.comm else COMPUTE)
        work.append(float(part.duration))
        pred.append(before)
        return len(labels) - 1

    forward: list[int] = []
    for layer in range(chunk.layers):
        for part in chunk.forward:
            forward.append(add("F", layer, part, forward[-1] if forward else -1))
    backward: list[int] = []
    weight: list[tuple[int, int, int]] = []  # (position of the B part, written order, id)
    for layer in reversed(range(chunk.layers)):
        named = {}
        for part in chunk.backward:
            named[part.name] = len(backward)
            backward.append(add("B", layer, part, backward[-1] if backward else -1))
        last = len(backward) - 1
        for order, part in enumerate(chunk.weight):
            position = named.get(part.name, last)
            weight.append((position, order, add("W", layer, part, backward[position])))
    return PairProblem(tuple(labels), tuple(lane), tuple(work), tuple(pred), tuple(forward),
                       tuple(backward), tuple(i for _, _, i in sorted(weight)), float(chunk.comm_share))


def total(problem: PairProblem, ids, lane: int | None = None) -> float:
    """The summed duration of the parts `ids` (only those on `lane` when given), correctly rounded."""
    return math.fsum(problem.work[i] for i in ids if lane is None or problem.lane[i] == lane)
