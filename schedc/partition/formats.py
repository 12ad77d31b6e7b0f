"""A split in the forms users paste into their framework.

- `format_megatron_layout`: Megatron-LM's `--pipeline-model-parallel-layout` string: stages in
  model order separated by `|`, a layer by its letter (E embedding, t block, m MTP, L loss), runs
  written `t*5`, and runs of identical stages `(t*5|)*6`. `parse_megatron_layout` reads the same
  syntax (with Megatron's cosmetic commas) back into per-stage letter strings, so a test checks
  that parsing a written layout gives the split back.
- `torchtitan_stages`: per-stage lists of module names (`module_names_per_stage`).
- `deepspeed_parts`: the stage boundaries (`PipelineModule`'s `parts`).
- `format_cost_block`: the `.sched` cost and memory blocks with one `stage N { }` per stage.
"""

from __future__ import annotations

import re

from ..lang.layers import LayerModel
from .problem import Bounds, PartitionProblem, stage_activations, stage_costs, stage_ranges


def _run_text(letter: str, count: int) -> str:
    return letter if count == 1 else f"{letter}*{count}"


def _stage_text(letters: str) -> str:
    """`Ettttt` -> `Et*5`."""
    return "".join(_run_text(m.group(0)[0], len(m.group(0))) for m in re.finditer(r"(.)\1*", letters))


def stage_letters(model: LayerModel, bounds: Bounds) -> list[str]:
    return ["".join(model.layers[i].kind for i in r) for r in stage_ranges(bounds)]


def format_megatron_layout(model: LayerModel, bounds: Bounds) -> str:
    """The layout string of a split, e.g. `Et*2|(t*5|)*6L`."""
    stages = [_stage_text(s) for s in stage_letters(model, bounds)]
    groups: list[tuple[str, int]] = []
    for text in stages:
        if groups and groups[-1][0] == text:
            groups[-1] = (text, groups[-1][1] + 1)
        else:
            groups.append((text, 1))
    out = []
    for index, (text, count) in enumerate(groups):
        last = index == len(groups) - 1
        if count == 1:
            out.append(text if last else text + "|")
        elif last:
            out.append(f"({text}|)*{count - 1}{text}")
        else:
            out.append(f"({text}|)*{count}")
    return "".join(out)


_TOKEN = re.compile(r"\s*(?:(?P<letter>[EtmL])|(?P<bar>\|)|(?P<open>\()|(?P<close>\))|"
                    r"(?P<times>\*\s*(?P<count>\d+))|(?P<comma>,))")


def parse_megatron_layout(text: str) -> list[str]:
    """Per-stage letter strings of a layout string; raises ValueError on bad syntax."""
    expanded, pos = _parse_sequence(text, 0, top=True)
    if pos != len(text.rstrip()):
        raise ValueError(f"unexpected {text[pos]!r} at column {pos + 1} of the layout")
    return expanded.split("|")


def _parse_sequence(text: str, pos: int, top: bool) -> tuple[str, int]:
    out: list[str] = []
    while pos < len(text.rstrip()):
        match = _TOKEN.match(text, pos)
        if not match:
            raise ValueError(f"unexpected {text[pos]!r} at column {pos + 1} of the layout")
        if match.group("close"):
            if top:
                raise ValueError(f"unmatched ')' at column {pos + 1} of the layout")
            return "".join(out), match.end()
        pos = match.end()
        if match.group("letter") or match.group("bar"):
            out.append(match.group(0).strip())
        elif match.group("open"):
            inner, pos = _parse_sequence(text, pos, top=False)
            out.append(inner)
        elif match.group("times"):
            if not out:
                raise ValueError(f"'*' with nothing before it at column {pos} of the layout")
            out[-1] = out[-1] * int(match.group("count"))
    if not top:
        raise ValueError("a '(' is not closed in the layout")
    return "".join(out), pos


def torchtitan_stages(model: LayerModel, bounds: Bounds) -> list[list[str]]:
    return [[model.layers[i].name for i in r] for r in stage_ranges(bounds)]


def deepspeed_parts(bounds: Bounds) -> list[int]:
    return list(bounds)


def format_cost_block(problem: PartitionProblem, bounds: Bounds) -> str:
    """`cost { stage 0 { F = .. B = .. W = .. } ... }` and `memory { stage 0 { activation = .. } }`
    for this split (at each stage's rank speed), to paste into a .sched file."""
    lines = ["cost {"]
    for s, (cost, r) in enumerate(zip(stage_costs(problem, bounds), stage_ranges(bounds))):
        names = problem.model.layers[r.start].name + ("" if len(r) == 1 else f" .. {problem.model.layers[r.stop - 1].name}")
        lines.append(f"  stage {s} {{ F = {cost.forward:g}  B = {cost.backward:g}  W = {cost.weight:g} }}"
                     f"   # {names}")
    lines += ["}", "memory {"]
    for s, act in enumerate(stage_activations(problem, bounds)):
        lines.append(f"  stage {s} {{ activation = {act:g} }}")
    lines.append("}")
    return "\n".join(lines) + "\n"
