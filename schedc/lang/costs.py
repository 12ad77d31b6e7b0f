"""Per-stage costs: the `cost { }` block and its `stage N { }` overrides, checked into `StageCost`s,
and the block's `link { }` (a `Link`: transfers on a communication lane per rank)."""

from __future__ import annotations

from dataclasses import dataclass, replace

from ..errors import Note
from ..overlap.lanes import Link
from .chunk import check_chunk, derive_chunk, stage_chunk_blocks
from .syntax import PipelineAST, Setting
from .values import check_stage_exists, find_block, located_error, to_number, unique_settings, unknown_key

_COST_KEYS = {"F": "forward", "B": "backward", "W": "weight", "F&B": "overlap", "comm": "comm",
              "activation_bytes": "activation_bytes"}
LINK_KEYS = ("bandwidth", "latency", "comm_share")


@dataclass(frozen=True, slots=True)
class StageCost:
    """Time of each op kind on one stage. `backward` is the full backward B = I + W."""

    forward: float = 1
    backward: float = 2
    weight: float = 1
    overlap: float | None = None  # F&B; None means forward + backward (no gain)
    comm: float = 0  # transfer time of this stage's output (activation or gradient)
    # From a `chunk { }` (else 0): the communication inside F and inside B (exposed when the op
    # runs alone) and the part of both an overlapped pair hides under compute.
    comm_forward: float = 0
    comm_backward: float = 0
    comm_hidden: float = 0
    activation_bytes: float = 0  # with a link: the size of what the stage sends (comm is its time)

    @property
    def input_grad(self) -> float:
        return self.backward - self.weight

    @property
    def overlap_cost(self) -> float:
        return self.forward + self.backward if self.overlap is None else self.overlap


def check_costs(ast: PipelineAST, num_stages: int, split: bool) -> tuple[tuple[StageCost, ...], Link | None]:
    """Each stage's costs: the block's values, then its `stage N { }` overrides, then the defaults
    that depend on other keys (W = B / 2; a stage that changes F or B keeps the block's F&B gain).
    A stage with a `chunk { }` (the block's, or its own) takes F, B, W and F&B from its parts.
    With the block's `link { }` (returned beside the costs), each stage's comm is the time of its
    transfer on the link, latency + activation_bytes / bandwidth."""
    block = find_block(ast, "cost")
    if block is None:
        return tuple(_stage_cost({}, {}, split, None) for _ in range(num_stages)), None
    base = unique_settings(block.settings, " in the cost block")
    for s in base.values():
        if s.key not in _COST_KEYS:
            raise unknown_key(s, tuple(_COST_KEYS), "cost")
    block_cost = _stage_cost(base, {}, split, None)
    rows: list[dict[str, Setting]] = [{} for _ in range(num_stages)]
    chunks = stage_chunk_blocks(block, num_stages)
    for override in block.overrides:
        values = unique_settings(override.settings, " in this stage block")
        for s in values.values():
            if s.key not in _COST_KEYS:
                raise unknown_key(s, tuple(_COST_KEYS), "per-stage cost")
        for stage, span in override.stages:
            check_stage_exists(stage, span, num_stages)
            rows[stage].update(values)
    costs = tuple(_chunk_cost(chunk, {**base, **own}, block.span) if chunk else
                  _stage_cost(base, own, split, block_cost, stage)
                  for stage, (own, chunk) in enumerate(zip(rows, chunks)))
    return _linked(block, costs, [{**base, **own} for own in rows])


def _linked(block, costs: tuple[StageCost, ...], written: list[dict[str, Setting]]):
    """`costs` with the link's transfer sizes and times, and the link (None without one): sizes
    need a link, and a link sets comm (it is not also typed in)."""
    links = [s for s in block.sections if s.side == "link"]
    if len(links) > 1:
        raise located_error("a second `link { }` in this cost block: a pipeline has one link",
                            links[1].side_span, Note("the first one is here", links[0].side_span))
    link = _check_link(links[0]) if links else None
    for own in written:
        if link is None and "activation_bytes" in own:
            raise located_error("activation_bytes sizes a transfer on the link, and this cost block has "
                                "no `link { bandwidth = ... }`", own["activation_bytes"].key_span)
        if link is not None and "comm" in own:
            raise located_error("comm is given beside a `link { }` that sets it: with a link a transfer "
                                "takes latency + activation_bytes / bandwidth", own["comm"].key_span,
                                Note("the link is here", links[0].side_span))
    if link is None:
        return costs, None
    sizes = [to_number(own["activation_bytes"]) if "activation_bytes" in own else 0 for own in written]
    return tuple(replace(c, activation_bytes=b, comm=_round(link.transfer_time(b)))
                 for c, b in zip(costs, sizes)), link


def _check_link(section) -> Link:
    settings = unique_settings(section.parts, " in the link")
    for s in settings.values():
        if s.key not in LINK_KEYS:
            raise unknown_key(s, LINK_KEYS, "link")
    if "bandwidth" not in settings or to_number(settings["bandwidth"]) == 0:
        raise located_error("a link needs its bandwidth, a number > 0 (size units per time unit): "
                            "`link { bandwidth = 50  latency = 0.01 }`",
                            settings["bandwidth"].value_span if "bandwidth" in settings else section.side_span)
    value = {k: to_number(s) for k, s in settings.items()}
    if not value.get("comm_share", 0) < 1:
        raise located_error(f"comm_share must be in [0, 1), got {settings['comm_share'].value}: the share "
                            "of compute lost while a transfer runs", settings["comm_share"].value_span)
    return Link(value["bandwidth"], value.get("latency", 0), value.get("comm_share", 0))


def _chunk_cost(chunk, written: dict[str, Setting], where) -> StageCost:
    """A stage's costs derived from its chunk's parts (schedc.overlap); `comm` (or a link's
    `activation_bytes`) may still be written beside it, F, B, W and F&B may not (the chunk derives them)."""
    typed = [s for key, s in written.items() if key not in ("comm", "activation_bytes")]
    if typed:
        raise located_error(f"{typed[0].key} is given beside a `chunk {{ }}` that derives it: a stage's "
                            "F, B, W and F&B come from its chunk's parts or are typed in, not both",
                            typed[0].key_span, Note("the chunk is here", chunk.span or where))
    parts = check_chunk(chunk, where)
    derived = derive_chunk(parts)
    comm = to_number(written["comm"]) if "comm" in written else 0
    comm_forward, comm_backward = (parts.layers * sum(p.duration for p in side if p.comm)
                                   for side in (parts.forward, parts.backward))
    return StageCost(_round(derived.F), _round(derived.B), _round(derived.W), _round(derived.FB), comm,
                     _round(comm_forward), _round(comm_backward),
                     _round(derived.hidden_comm * derived.comm))


def _round(value: float) -> float:
    """A derived figure rounded to 9 significant digits (sums of decimal parts print cleanly)."""
    return _tidy(float(f"{value:.9g}"))


def _stage_cost(base: dict[str, Setting], own: dict[str, Setting], split: bool,
                block_cost: StageCost | None, stage: int | None = None) -> StageCost:
    """One stage's `StageCost` from the block's settings and the stage's own (which win).

    Invariants of the result: W <= B when the backward is split, max(F, B) <= F&B <= F + B.
    W defaults to B / 2. A stage that overrides F or B without its own F&B keeps the block's
    overlap gain (F + B - F&B), bounded to [max(F, B), F + B]."""
    written = {**base, **own}
    value = {k: to_number(s) for k, s in written.items()}
    forward, backward = value.get("F", 1), value.get("B", 2)
    weight = value["W"] if "W" in value else _tidy(backward / 2)
    where = f"stage {stage}: " if stage is not None else ""
    if split and weight > backward:
        notes = [Note(f"{where}B is set here", own["B"].value_span)] if "B" in own and "W" not in own else []
        raise located_error(f"{where}W = {weight:g} is larger than the full backward B = {backward:g}; B is "
                   "the full backward (I + W), so W <= B", written.get("W", written.get("B")).value_span,
                   *notes)
    overlap = value.get("F&B")
    changed = ("F" in own or "B" in own) and "F&B" not in own
    if overlap is not None and changed and block_cost is not None:
        gain = block_cost.forward + block_cost.backward - block_cost.overlap_cost
        overlap = _tidy(max(forward, backward, forward + backward - gain))
    elif overlap is not None and not max(forward, backward) <= overlap <= forward + backward:
        raise located_error(f"{where}F&B = {overlap:g} must lie between max(F, B) = {max(forward, backward):g} "
                   f"and F + B = {forward + backward:g}: an overlapped pair takes at least as long as "
                   "its longer half and at most as long as both in turn", written["F&B"].value_span)
    return StageCost(forward, backward, weight, overlap, value.get("comm", 0))


def _tidy(value: float) -> float:
    """A whole float as an int (so `B / 2` of 2 prints as 1, as a typed 1 does)."""
    return int(value) if float(value).is_integer() else value


def _pieces(source: int, target: int, t: int):
    """(source stage, the share of it) that target stage `t` covers, when one model cut into
    `source` equal-length stages is cut again into `target` ones. Units of 1/(source x target)
    keep the boundaries exact: target t is [t*source, (t+1)*source), source s is [s*target, ...)."""
    low, high = t * source, (t + 1) * source
    for s in range(low // target, -(-high // target)):
        covered = min(high, (s + 1) * target) - max(low, s * target)
        if covered > 0:
            yield s, covered / target


def recut_sizes(values: tuple[float, ...], stages: int) -> tuple[float, ...]:
    """Per-stage sizes (activations) of the same model cut into `stages` stages: each new stage
    holds the shares of the old stages it covers. The total is kept."""
    return tuple(_tidy(sum(values[s] * share for s, share in _pieces(len(values), stages, t)))
                 for t in range(stages))


def recut_costs(costs: tuple[StageCost, ...], stages: int) -> tuple[StageCost, ...]:
    """The per-stage costs of the same model (the same layers, in order) cut into `stages` stages
    instead of `len(costs)`: F, B, W and F&B of a new stage are the shares of the old stages it
    covers (so a family with k times the stages runs each at 1/k, and uneven stages stay where
    they are in the model); comm is that of the old stage in which the new stage's output cut
    falls (the tensors between layers do not shrink), and so are activation_bytes. Keeps max(F, B) <= F&B <= F + B."""
    source = len(costs)

    def share(t: int, field: str) -> float:
        return _tidy(sum(getattr(costs[s], field) * part for s, part in _pieces(source, stages, t)))

    def cut(t: int) -> int:  # the old stage in which new stage t's output cut falls
        return -(-(t + 1) * source // stages) - 1

    any_overlap = any(c.overlap is not None for c in costs)
    return tuple(StageCost(share(t, "forward"), share(t, "backward"), share(t, "weight"),
                           share(t, "overlap_cost") if any_overlap else None,
                           costs[cut(t)].comm, share(t, "comm_forward"), share(t, "comm_backward"),
                           share(t, "comm_hidden"), costs[cut(t)].activation_bytes)
                 for t in range(stages))
