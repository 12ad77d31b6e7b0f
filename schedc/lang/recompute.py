"""Recomputation: the `recompute { }` block and the `recompute = ...` choice, checked per stage.

An option (`full { cost = 1  keeps = 0.05 }`) drops part of a stage's activation after the forward
and rebuilds it before the backward: `cost` is the R op's time (the file's time unit), `keeps` the
fraction of the activation held from F until R, in [0, 1). The block's options apply to every
stage; `stage N { }` redefines options, or chooses one (`recompute = NAME`), for some stages. The
pipeline setting `recompute = auto | none | NAME` (default none) chooses for the other stages;
`auto` leaves the choice to the optimizer (compiler/recompute.py).

The R ops are placed, and a pipeline's R folded into its backward for the schedulers, by
passes/recompute.py (`folded`, `insert_recompute`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from ..errors import Note
from ..ir import OpKind
from .syntax import PipelineAST, Setting
from .values import check_stage_exists, find_block, located_error, suggest, to_number, unique_settings

NONE, AUTO = "none", "auto"
_OPTION_KEYS = ("cost", "keeps")


@dataclass(frozen=True, slots=True)
class RecomputeOption:
    """One way to recompute a stage: the R op's time and the fraction of the activation kept."""

    name: str
    cost: float
    keeps: float


def check_recompute(ast: PipelineAST, choice: Setting | None, num_stages: int, manual: bool):
    """(options per stage, choice per stage: none, auto or an option's name) of a pipeline; both
    () without a recompute block (or with one that defines no option); located errors for a bad
    option or choice. `manual`: the pipeline has a hand-written order (which cannot take auto)."""
    block = find_block(ast, "recompute")
    if block is None:
        if choice is not None and choice.value.lower() != NONE:
            raise located_error(f"recompute = {choice.value} needs options: add a `recompute {{ full {{ "
                                "cost = 1  keeps = 0.05 } }` block", choice.value_span)
        return (), ()
    base = _options(block.sections, {})
    options = [dict(base) for _ in range(num_stages)]
    choices = [choice] * num_stages
    for override in block.overrides:
        own = unique_settings(override.settings, " in this stage block")
        for key, s in own.items():
            if key != "recompute":
                raise located_error(f"unknown per-stage recompute setting '{key}' (known: recompute, "
                                    "or an option such as `full { cost = 1  keeps = 0.05 }`)", s.key_span)
        for stage, span in override.stages:
            check_stage_exists(stage, span, num_stages)
            options[stage] = _options(override.sections, options[stage])
            choices[stage] = own.get("recompute", choices[stage])
    words = tuple(_choice(c, options[s], manual) for s, c in enumerate(choices))
    if all(w == NONE for w in words) and all(o == base for o in options) and not base:
        return (), ()
    return tuple(tuple(o.values()) for o in options), words


def _options(sections, inherited: dict) -> dict:
    """name -> RecomputeOption: `inherited`, then `sections` (each a written option) over them."""
    out = dict(inherited)
    seen: dict[str, object] = {}
    for section in sections:
        name = section.side
        if name.lower() in (NONE, AUTO):
            raise located_error(f"'{name}' is a recompute choice, not an option name; call the option "
                                "something else", section.side_span)
        if name in seen:
            raise located_error(f"recompute option '{name}' is defined twice here", section.side_span,
                                Note("first defined here", seen[name]))
        seen[name] = section.side_span
        out[name] = _option(name, section)
    return out


def _option(name: str, section) -> RecomputeOption:
    values = unique_settings(section.parts, f" in recompute option '{name}'")
    for key, s in values.items():
        if key not in _OPTION_KEYS:
            raise located_error(f"unknown recompute option setting '{key}'{suggest(key, _OPTION_KEYS)} "
                                f"(known: {', '.join(_OPTION_KEYS)})", s.key_span)
    for key in _OPTION_KEYS:
        if key not in values:
            raise located_error(f"recompute option '{name}' needs `{key} = ...` (cost: the R op's time; "
                                "keeps: the fraction of the activation held from F until R)",
                                section.side_span)
    cost, keeps = (_signed(values[k]) for k in _OPTION_KEYS)
    if cost < 0:
        raise located_error(f"recompute option '{name}': cost = {values['cost'].value} is negative; it is "
                            "the time the R op takes, 0 or more", values["cost"].value_span)
    if not 0 <= keeps < 1:
        what = ("keeps more than it saves: the whole activation stays held, so it only costs time"
                if keeps >= 1 else "cannot keep a negative part of the activation")
        raise located_error(f"recompute option '{name}': keeps = {values['keeps'].value} {what}; keeps is "
                            "the fraction held from F until R, 0 <= keeps < 1", values["keeps"].value_span)
    return RecomputeOption(name, cost, keeps)


def _signed(setting: Setting) -> float:
    """A number that may be negative (the option's checks say why one is wrong)."""
    if setting.value.startswith("-"):
        return -to_number(replace(setting, value=setting.value[1:]))
    return to_number(setting)


def _choice(setting: Setting | None, options: dict, manual: bool) -> str:
    if setting is None:
        return NONE
    word = setting.value.lower() if setting.value.lower() in (NONE, AUTO) else setting.value
    if word == AUTO and manual:
        raise located_error("recompute = auto lets the optimizer choose, but a hand-written order is "
                            "fixed: choose an option (or none) for each stage", setting.value_span)
    if word not in (NONE, AUTO) and word not in options:
        known = ", ".join(list(options) + [AUTO, NONE])
        raise located_error(f"unknown recompute option '{word}'{suggest(word, options)} (one of: {known})",
                            setting.value_span)
    return word


def check_order_recompute(spec, items) -> None:
    """A rank line's R ops: each on a stage that recomputes, and after the forward it rebuilds."""
    forwards = set()
    for item in items:
        parts = item.instr.parts or (item.instr,)
        for op in parts:
            if op.kind is OpKind.F:
                forwards.add((op.direction, op.stage, op.microbatch))
            if op.kind is not OpKind.R:
                continue
            if chosen_option(spec, op.stage) is None:
                raise located_error(f"{op} recomputes stage {op.stage}, which does not recompute "
                                    f"(choose an option for it: `recompute = NAME`)", item.span)
            if (op.direction, op.stage, op.microbatch) not in forwards:
                forward = op.with_kind(OpKind.F)
                raise located_error(f"{op} comes before {forward}, the forward whose activation it "
                                    f"rebuilds; write {op} after {forward}, right before the backward",
                                    item.span)


def chosen_option(spec, stage: int) -> RecomputeOption | None:
    """The option `stage` recomputes with; None when it keeps its activation (none, or auto)."""
    if not spec.recompute:
        return None
    choice = spec.recompute[stage]
    return next((o for o in spec.recompute_options[stage] if o.name == choice), None)


def recut_recompute(spec, stages: int) -> dict:
    """The recompute fields of `spec` for the same model cut into `stages` stages: each new stage
    takes the options and choice of the old stage it starts in, costs scaled by its share."""
    if not spec.recompute:
        return {}
    old = len(spec.recompute)
    starts = [t * old // stages for t in range(stages)]  # the old stage each new one starts in
    options = tuple(tuple(replace(o, cost=_tidy(o.cost * old / stages)) for o in spec.recompute_options[s])
                    for s in starts)
    return {"recompute_options": options, "recompute": tuple(spec.recompute[s] for s in starts)}


def _tidy(value: float) -> float:
    return int(value) if float(value).is_integer() else value


def format_recompute(spec) -> list[str]:
    """The canonical text of `spec`'s recompute setting and block (no lines without one): the
    options every stage has (with stage 0's figures) in the block, each stage's others and its
    choice where it differs from stage 0's in a `stage N { }`."""
    if not spec.recompute:
        return []
    first = spec.recompute[0]
    shared = set.intersection(*({o.name for o in options} for options in spec.recompute_options))
    base = tuple(o for o in spec.recompute_options[0] if o.name in shared)  # every stage has these
    lines = [f"  recompute = {first}", "  recompute {"]
    lines += [f"    {_option_text(o)}" for o in base]
    for s, (options, choice) in enumerate(zip(spec.recompute_options, spec.recompute)):
        items = [_option_text(o) for o in options if o not in base]
        items += [f"recompute = {choice}"] if choice != first else []
        lines += [f"    stage {s} {{ {'  '.join(items)} }}"] if items else []
    return lines + ["  }"]


def _option_text(option: RecomputeOption) -> str:
    return f"{option.name} {{ cost = {option.cost:g}  keeps = {option.keeps:g} }}"
