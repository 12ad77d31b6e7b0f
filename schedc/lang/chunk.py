"""The `chunk { }` block: a stage's cost as parts per layer, checked into an `overlap.Chunk`.

    chunk {
      layers = 4                                   # the parts repeat per layer
      F { attention = 4.1  dispatch = 6.7  mlp = 4.6  combine = 8.7 }
      B { combine = 5.8  mlp = 5.3  dispatch = 7.5  attention = 8.8 }   # input-grad parts
      W { mlp = 3.5  attention = 2.4 }                                    # weight-grad parts
      communication = dispatch, combine            # parts that use the network (this default)
      comm_share = 0.15                            # share of compute lost while communication runs
    }

Every mistake is located: an unknown section or setting, a part named twice, a `communication`
name no section uses, a W part that is communication, `comm_share` outside [0, 1), `layers` not a
whole number >= 1, F or B missing. What the parts mean (dependencies, lanes, the derived F, B, W
and F&B) is the overlap model's (schedc.overlap).
"""

from __future__ import annotations

from functools import lru_cache

from ..overlap import Chunk, Derived, Part, derive_costs
from .syntax import Block, ChunkAST, Setting
from .values import find_block, located_error, to_int, to_number, unique_settings, unknown_key

SECTIONS = ("F", "B", "W")
CHUNK_KEYS = ("layers", "communication", "comm_share")
DEFAULT_COMMUNICATION = ("dispatch", "combine")
MAX_PARTS = 5_000  # parts in one chunk (layers x parts per layer, F, B and W): derived in ~0.1 s


def check_chunk(chunk: ChunkAST, where) -> Chunk:
    """The checked parts of one `chunk { }` (`where`: the span to blame when the block is empty)."""
    settings = unique_settings(chunk.settings, " in this chunk")
    for s in settings.values():
        if s.key not in CHUNK_KEYS:
            raise unknown_key(s, CHUNK_KEYS, "chunk")
    sections = _sections(chunk, where)
    layers = to_int(settings["layers"]) if "layers" in settings else 1
    per_layer = sum(len(parts) for parts in sections.values())
    if layers * per_layer > MAX_PARTS:
        raise located_error(f"this chunk has {layers} x {per_layer} = {layers * per_layer:,} parts; the "
                            f"overlap model takes at most {MAX_PARTS:,} (fewer layers per stage, or "
                            "parts that stand for several layers)", settings["layers"].value_span)
    share = _comm_share(settings.get("comm_share"))
    communication = _communication(settings.get("communication"), sections)
    parts = {side: tuple(Part(s.key, to_number(s), s.key in communication) for s in sections.get(side, ()))
             for side in SECTIONS}
    for s in sections.get("W", ()):
        if s.key in communication:
            raise located_error(f"W part '{s.key}' is named in `communication`: weight-gradient parts "
                                "are compute (they send nothing)", s.key_span)
    return Chunk(layers, parts["F"], parts["B"], parts["W"], share)


def stage_chunk_blocks(block: Block, num_stages: int) -> list[ChunkAST | None]:
    """The `chunk { }` of each stage: the stage block's own, else the cost block's, else None
    (stage numbers are checked by the caller)."""
    chunks = [block.chunk] * num_stages
    for override in block.overrides:
        for stage, _span in override.stages:
            if override.chunk is not None and 0 <= stage < num_stages:
                chunks[stage] = override.chunk
    return chunks


def stage_chunks(spec) -> tuple[Chunk | None, ...]:
    """Each stage's checked chunk (None where the stage's costs are typed in) of a spec read from
    a file; () when the file has no chunk (or the spec did not come from a file)."""
    ast = spec.source.ast
    block = find_block(ast, "cost") if ast is not None else None
    if block is None:
        return ()
    blocks = stage_chunk_blocks(block, spec.num_stages)
    if not any(blocks):
        return ()
    return tuple(check_chunk(c, block.span) if c is not None else None for c in blocks)


@lru_cache(maxsize=256)
def derive_chunk(chunk: Chunk) -> Derived:
    """The overlap model's figures for `chunk` (cached: every stage of a file shares its chunk)."""
    return derive_costs(chunk)


def _sections(chunk: ChunkAST, where) -> dict[str, tuple[Setting, ...]]:
    found = {}
    for section in chunk.sections:
        if section.side not in SECTIONS:
            raise located_error(f"unknown chunk section '{section.side}' (known: F, B, W: the forward, "
                                "the input-gradient and the weight-gradient parts)", section.side_span)
        if section.side in found:
            raise located_error(f"a second {section.side} section in this chunk", section.side_span)
        unique_settings(section.parts, f" in the chunk's {section.side} section")
        if not section.parts:
            raise located_error(f"the chunk's {section.side} section lists no parts", section.span)
        found[section.side] = section.parts
    for side in ("F", "B"):
        if side not in found:
            raise located_error(f"this chunk has no {side} section: a chunk lists its forward parts "
                                "(F { ... }) and its input-gradient parts (B { ... })", chunk.span or where)
    return found


def _comm_share(setting: Setting | None) -> float:
    if setting is None:
        return 0.0
    value = to_number(setting)
    if not 0 <= value < 1:
        raise located_error(f"comm_share must be in [0, 1), got {setting.value}: the share of compute "
                            "lost while communication runs", setting.value_span)
    return value


def _communication(setting: Setting | None, sections) -> frozenset[str]:
    """The names of the parts that use the network; each must be a part of some section (the
    default, dispatch and combine, only where the sections have them)."""
    written = {s.key for parts in sections.values() for s in parts}
    if setting is None:
        return frozenset(n for n in DEFAULT_COMMUNICATION if n in written)
    names = [n.strip() for n in setting.value.split(",")]
    for name in names:
        if name not in written:
            raise located_error(f"communication names '{name}', which no section of this chunk has "
                                f"(parts: {', '.join(sorted(written))})", setting.value_span)
    return frozenset(names)
