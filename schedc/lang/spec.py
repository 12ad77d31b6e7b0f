"""The checked problem: `PipelineSpec`, built from a pipeline's AST with located semantic errors.

A `PipelineSpec` is complete (every default filled in), frozen, and knows its placement:
`rank_of(direction, stage)` and `stages_of(rank)`. Where each setting came from is kept beside it
in `SpecSource` (not part of equality) so later passes can point at the user's text.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from ..errors import Note, Span, at
from ..ir import BACKWARD, COMPUTE, Instr, OpKind
from ..overlap.lanes import Link
from .costs import StageCost, check_costs
from .layers import LayeredStages
from .recompute import RecomputeOption, check_recompute, check_order_recompute, chosen_option
from .syntax import Block, OrderItem, PipelineAST, ProgramAST, Setting
from .values import (check_op_budget, check_stage_exists, find_block, located_error, search_settings,
                     to_bool, to_choice, to_int, to_memory_number, unique_settings, unknown_key)

FAMILIES = ("gpipe", "1f1b", "interleaved", "zb-h1", "zb-h2", "zbv", "dualpipe", "dualpipev")
SEARCHES = ("search", "optimal")  # found by schedc.search, not handcrafted
SCHEDULES = FAMILIES + ("auto", "manual") + SEARCHES
PLACEMENTS = ("linear", "interleaved", "v", "bidirectional")
OPTIMAL_TIME = 60.0  # schedule = optimal: the solver's default time budget (seconds)
ANY_PLACEMENT = "any"  # schedule = search/optimal/auto: try every placement

# The placement each family runs on, and whether it needs the backward split into I and W.
FAMILY_PLACEMENT = {"gpipe": "linear", "1f1b": "linear", "interleaved": "interleaved",
                    "zb-h1": "linear", "zb-h2": "linear", "zbv": "v", "dualpipe": "bidirectional",
                    "dualpipev": "v", "manual": "linear", "auto": "linear", "search": "linear",
                    "optimal": "linear"}
SPLIT_FAMILIES = frozenset({"zb-h1", "zb-h2", "zbv", "dualpipe", "dualpipev", "search", "optimal"})
OVERLAP_FAMILIES = frozenset({"dualpipe", "dualpipev", "search"})


@dataclass(frozen=True, slots=True)
class SpecSource:
    """Where the user wrote each setting and each hand-written token (for error messages)."""

    file: str = "<spec>"
    pipeline: Span | None = None
    settings: tuple[tuple[str, Span], ...] = ()
    order_tokens: tuple[tuple[tuple[int, int], Span], ...] = ()  # ((rank, index), span)
    rank_lines: tuple[tuple[int, Span], ...] = ()
    ast: PipelineAST | None = None  # what the user wrote, to re-check under another family

    def span(self, key: str) -> Span | None:
        return dict(self.settings).get(key)

    def token(self, rank: int, index: int) -> Span | None:
        return dict(self.order_tokens).get((rank, index))

    def rank_line(self, rank: int) -> Span | None:
        return dict(self.rank_lines).get(rank)


@dataclass(frozen=True, slots=True)
class PipelineSpec:
    """A pipeline to schedule: sizes, placement, family, costs, memory, and an optional order."""

    name: str
    ranks: int
    microbatches: int
    schedule: str = "1f1b"
    placement: str = "linear"
    chunks: int = 1  # interleaved: stages per rank (v); V: 2; linear and bidirectional: 1
    split_backward: bool = False
    overlap: bool = False
    costs: tuple[StageCost, ...] = ()
    activations: tuple[float, ...] = ()
    memory_limit: float | None = None
    order: tuple[tuple[Instr, ...], ...] | None = None
    source: SpecSource = field(default=SpecSource(), compare=False, hash=False)
    weight_grad: tuple[float, ...] = ()  # per stage: fraction of the activation kept from I until W
    parameters: tuple[float, ...] = ()  # per stage replica: parameter (and optimizer) memory
    search_time: float = 5.0  # schedule = search/optimal: the time budget in seconds
    seed: int = 0  # schedule = search: the seed of its random generator
    placements: tuple[str, ...] = ()  # placement = any: the placements the search may choose from
    layers: LayeredStages | None = None  # stages = auto: the layers the stages are cut from
    recompute_options: tuple[tuple[RecomputeOption, ...], ...] = ()  # per stage (recompute.py)
    recompute: tuple[str, ...] = ()  # per stage: none, auto or an option's name; () = none anywhere
    link: Link | None = None  # the cost block's `link { }`: transfers on a lane per rank (simulate.py)

    @property
    def num_stages(self) -> int:
        """Stages per direction."""
        return self.ranks * self.chunks

    @property
    def directions(self) -> int:
        return 2 if self.placement == "bidirectional" else 1

    @property
    def microbatches_per_direction(self) -> int:
        return self.microbatches // self.directions

    def rank_of(self, direction: int, stage: int) -> int:
        """The rank that holds `stage` of `direction` (docs/language.md, "Placements")."""
        p = self.ranks
        if self.placement == "v":
            return stage if stage < p else 2 * p - 1 - stage
        if self.placement == "bidirectional":
            return stage if direction == 0 else p - 1 - stage
        return stage % p

    def stages_of(self, rank: int) -> tuple[tuple[int, int], ...]:
        """(direction, stage) pairs held by `rank`, in stage order."""
        return tuple((d, s) for d in range(self.directions) for s in range(self.num_stages)
                     if self.rank_of(d, s) == rank)

    def cost(self, stage: int) -> StageCost:
        return self.costs[stage]

    def compute_ops(self):
        """Every DAG node: F, R on a stage that recomputes, and B or I+W, for each direction,
        stage and microbatch."""
        kinds = (OpKind.F, OpKind.I, OpKind.W) if self.split_backward else (OpKind.F, OpKind.B)
        for d in range(self.directions):
            for s in range(self.num_stages):
                stage_kinds = kinds[:1] + (OpKind.R,) + kinds[1:] if chosen_option(self, s) else kinds
                for j in range(self.microbatches_per_direction):
                    for kind in stage_kinds:
                        yield Instr.compute(kind, d, s, j)


def spec_to_json(spec: PipelineSpec) -> dict:
    """The spec as JSON, for the plan's JSON form (costs per stage)."""
    return {
        "name": spec.name, "ranks": spec.ranks, "microbatches": spec.microbatches,
        "schedule": spec.schedule, "placement": spec.placement, "chunks": spec.chunks,
        "stages": spec.num_stages, "directions": spec.directions,
        "split_backward": spec.split_backward, "overlap": spec.overlap,
        "costs": [{"F": c.forward, "B": c.backward, "W": c.weight, "F&B": c.overlap_cost, "comm": c.comm}
                  for c in spec.costs],
        "activations": list(spec.activations), "memory_limit": spec.memory_limit,
        **({"weight_grad": list(spec.weight_grad)} if spec.weight_grad else {}),
        **({"parameters": list(spec.parameters)} if spec.parameters else {}),
        **({"link": {"bandwidth": spec.link.bandwidth, "latency": spec.link.latency, "comm_share":
                     spec.link.comm_share, "activation_bytes": [c.activation_bytes for c in spec.costs]}}
           if spec.link else {}),
        **({"recompute": [{"choice": c, "options": [{"name": o.name, "cost": o.cost, "keeps": o.keeps}
                                                    for o in opts]}
                          for c, opts in zip(spec.recompute, spec.recompute_options)]}
           if spec.recompute else {}),
    }


# ---- checking an AST into a spec --------------------------------------------------------------

_TOP_KEYS = ("ranks", "microbatches", "schedule", "placement", "chunks", "split_backward", "overlap",
             "search_time", "seed", "stages", "min_stage_layers", "recompute")
_MEMORY_KEYS = ("activation", "limit", "weight_grad", "parameters")


def _top_settings(ast: PipelineAST) -> dict[str, Setting]:
    settings = unique_settings(ast.settings, "")
    for s in settings.values():
        if s.key not in _TOP_KEYS:
            raise unknown_key(s, _TOP_KEYS, "pipeline")
    for key in ("ranks", "microbatches"):
        if key not in settings:
            raise located_error(f"pipeline '{ast.name}' does not say how many {key} it has; add `{key} = N`",
                       ast.name_span)
    return settings


def _stage_values(block: Block | None, keys, num_stages: int, convert, defaults: dict) -> list[dict]:
    """Per-stage dictionaries: the block's defaults, then each `stage N { }` override."""
    base = dict(defaults)
    if block is not None:
        for key, s in unique_settings(block.settings, f" in the {block.kind} block").items():
            if key not in keys:
                raise unknown_key(s, keys, block.kind)
            base[key] = convert(s)
    per_stage = [dict(base) for _ in range(num_stages)]
    for override in (block.overrides if block else ()):
        values = unique_settings(override.settings, " in this stage block")
        for key, s in values.items():
            if key not in keys or key == "limit":
                raise unknown_key(s, [k for k in keys if k != "limit"], f"per-stage {block.kind}")
        for stage, span in override.stages:
            check_stage_exists(stage, span, num_stages)
            per_stage[stage].update({k: convert(s) for k, s in values.items()})
    return per_stage


def _memory(ast: PipelineAST, num_stages: int) -> tuple[dict, float | None, Span | None]:
    """Per-stage memory figures (activation, weight_grad, parameters: tuples, the last two empty
    when never set), the per-rank limit (None: no limit), and where the limit is."""
    block = find_block(ast, "memory")
    rows = _stage_values(block, _MEMORY_KEYS, num_stages, to_memory_number,
                         {"activation": 1, "weight_grad": 1, "parameters": 0})
    limit = rows[0].get("limit") if rows else None
    limit_span = next((s.span for s in block.settings if s.key == "limit"), None) if block else None
    figures = {key: tuple(row[key] for row in rows) for key in ("activation", "weight_grad", "parameters")}
    for key, default in (("weight_grad", 1), ("parameters", 0)):
        if all(v == default for v in figures[key]):
            figures[key] = ()
    return figures, limit, limit_span


def _placement(settings: dict[str, Setting], schedule: str) -> tuple[str, int]:
    placement = FAMILY_PLACEMENT[schedule]
    if "placement" in settings and settings["placement"].value.lower() == ANY_PLACEMENT:
        if schedule not in SEARCHES + ("auto",):
            raise located_error(f"placement = any lets the optimizer choose the placement; it needs schedule "
                       f"= search, optimal or auto (schedule is {schedule})",
                       settings["placement"].value_span)
        return "linear", 1
    if "placement" in settings:
        placement = to_choice(settings["placement"], PLACEMENTS)
    chunks = {"linear": 1, "bidirectional": 1, "v": 2, "interleaved": 2}[placement]
    if "chunks" in settings:
        chunks = to_int(settings["chunks"])
        if placement != "interleaved" and chunks != {"v": 2}.get(placement, 1):
            raise located_error(f"chunks = {chunks} only applies to placement = interleaved "
                       f"(placement is {placement})", settings["chunks"].value_span)
        if placement == "interleaved" and chunks < 2:
            raise located_error("interleaved placement needs chunks >= 2", settings["chunks"].value_span)
    return placement, chunks


def check_program(program: ProgramAST) -> list[PipelineSpec]:
    """Check every pipeline of a file; two pipelines may not share a name (`--pipeline NAME`
    must mean one of them), reported at the second name."""
    seen: dict[str, Span] = {}
    for ast in program.pipelines:
        if ast.name in seen:
            raise located_error(f"a second pipeline named '{ast.name}'; pipelines in one file need different "
                       "names (`--pipeline NAME` picks one)", ast.name_span,
                       Note("the first one is here", seen[ast.name]))
        seen[ast.name] = ast.name_span
    return [check_pipeline(ast) for ast in program.pipelines]


def check_pipeline(ast: PipelineAST) -> PipelineSpec:
    """Check one pipeline's AST and build its spec; raises `SchedError` on the first problem."""
    settings = _top_settings(ast)
    if len(ast.orders) > 1:
        raise located_error("more than one order block; write every rank in one `order { }`",
                   ast.orders[1].span, Note("first one here", ast.orders[0].span))
    schedule = "manual" if ast.orders else "1f1b"
    if "schedule" in settings:
        schedule = to_choice(settings["schedule"], SCHEDULES)
        if ast.orders and schedule != "manual":
            raise located_error(f"schedule = {schedule} and a hand-written order both given; remove one "
                       "(or write `schedule = manual`)", settings["schedule"].value_span,
                       Note("the order is here", ast.orders[0].span))
        if schedule == "manual" and not ast.orders:
            raise located_error("schedule = manual needs an `order { rank 0: ... }` block",
                       settings["schedule"].value_span)
    ranks, microbatches = to_int(settings["ranks"]), to_int(settings["microbatches"])
    placement, chunks = _placement(settings, schedule)
    split = schedule in SPLIT_FAMILIES
    if "split_backward" in settings:
        split = to_bool(settings["split_backward"])
    check_op_budget(ranks * chunks * microbatches * (3 if split else 2),
                    settings["microbatches"].value_span, f"pipeline '{ast.name}'")
    overlap = to_bool(settings["overlap"]) if "overlap" in settings else schedule in OVERLAP_FAMILIES
    num_stages = ranks * chunks
    memory, limit, limit_span = _memory(ast, num_stages)
    searching = search_settings(settings)
    if schedule == "optimal" and "search_time" not in searching:
        searching["search_time"] = OPTIMAL_TIME
    if "placement" in settings and settings["placement"].value.lower() == ANY_PLACEMENT:
        searching["placements"] = PLACEMENTS
    spans = tuple((k, s.span) for k, s in settings.items()) + (("limit", limit_span),) * bool(limit_span)
    source = SpecSource(ast.name_span.file, ast.name_span, spans, ast=ast)
    costs, link = check_costs(ast, num_stages, split)
    spec = PipelineSpec(ast.name, ranks, microbatches, schedule, placement, chunks, split, overlap,
                        costs, memory["activation"], limit, None, source, memory["weight_grad"],
                        memory["parameters"], **searching, link=link)
    options, choices = check_recompute(ast, settings.get("recompute"), num_stages, bool(ast.orders))
    spec = replace(spec, recompute_options=options, recompute=choices)
    if placement == "bidirectional" and microbatches % 2:
        raise located_error(f"a bidirectional pipeline splits its microbatches between two directions, so "
                   f"microbatches must be even (got {microbatches})", settings["microbatches"].value_span)
    if ast.layers or "stages" in settings:
        from .layers_check import with_layers
        spec = with_layers(spec, ast, settings)
    return _with_order(spec, ast) if ast.orders else spec


def _with_order(spec: PipelineSpec, ast: PipelineAST) -> PipelineSpec:
    lines: dict[int, tuple[OrderItem, ...]] = {}
    tokens, line_spans = [], []
    for line in ast.orders[0].lines:
        if line.rank >= spec.ranks:
            raise located_error(f"rank {line.rank} does not exist: ranks = {spec.ranks}{at(spec.source.span('ranks'))} "
                       f"(ranks are 0..{spec.ranks - 1})", line.rank_span)
        if line.rank in lines:
            raise located_error(f"rank {line.rank} has two order lines; write each rank once", line.rank_span)
        lines[line.rank] = line.items
        line_spans.append((line.rank, line.rank_span))
        for index, item in enumerate(line.items):
            _check_token(spec, line.rank, item)
            tokens.append(((line.rank, index), item.span))
        check_order_recompute(spec, line.items)
    order = tuple(tuple(item.instr for item in lines.get(r, ())) for r in range(spec.ranks))
    source = replace(spec.source, order_tokens=tuple(tokens), rank_lines=tuple(line_spans))
    return replace(spec, order=order, source=source)


def _check_token(spec: PipelineSpec, rank: int, item: OrderItem) -> None:
    instr = item.instr
    parts = instr.parts if instr.kind is OpKind.OVERLAP else (instr,)
    for part in parts:
        if part.kind is OpKind.GRAD_SUM:
            if spec.placement != "bidirectional":
                raise located_error("GRAD_SUM only exists in bidirectional pipelines (two replicas per stage)",
                           item.span)
        else:
            _check_op_fields(spec, rank, part, item.span)
        if part.peer >= spec.ranks:
            raise located_error(f"peer rank {part.peer} does not exist: ranks = {spec.ranks}"
                       f"{at(spec.source.span('ranks'))}", item.span)
    if instr.kind is OpKind.OVERLAP:
        kinds = tuple(p.kind for p in parts)
        if kinds[0] is not OpKind.F or kinds[1] not in (OpKind.B, OpKind.I):
            raise located_error("an overlapped pair is a forward and a backward, written F...&B... "
                       f"(got {instr})", item.span)


def _check_op_fields(spec: PipelineSpec, rank: int, op: Instr, span: Span) -> None:
    if op.direction and spec.directions == 1:
        raise located_error(f"'{op}' names the second direction (trailing r), but placement = "
                   f"{spec.placement} has one direction", span)
    if op.stage >= spec.num_stages:
        raise located_error(f"stage {op.stage} used on rank {rank}, but this pipeline has stages "
                   f"0..{spec.num_stages - 1} (ranks = {spec.ranks}{at(spec.source.span('ranks'))}, "
                   f"placement {spec.placement})", span)
    mb_count = spec.microbatches_per_direction
    if op.microbatch >= mb_count:
        per = " per direction" if spec.directions == 2 else ""
        raise located_error(f"microbatch {op.microbatch} used on rank {rank}, but there are {mb_count} "
                   f"microbatches{per} (microbatches = {spec.microbatches}"
                   f"{at(spec.source.span('microbatches'))}), numbered 0..{mb_count - 1}", span)
    if op.kind in (OpKind.I, OpKind.W) and not spec.split_backward:
        raise located_error(f"'{op}' is a split backward op, but split_backward is off; "
                   "add `split_backward = true` or write B", span)
    if op.kind in COMPUTE and op.kind not in BACKWARD | {OpKind.F, OpKind.R}:
        raise located_error(f"unknown op '{op}'", span)
