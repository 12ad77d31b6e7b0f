"""The chunk parts a run measured, as the .sched file's `chunk { }` cost block, and the step the
simulator predicts from it, printed beside the measured step (`schedc run --ep E`).

Each stage's parts run alone (an F, B, I or W outside an overlapped pair, or every chunk of the
sequential pairs of `--compare-overlap`) are timed part by part (`ChunkRun`'s timings): compute
parts by their wall time, an all-to-all from posted to done. A part's figure is the median over
its runs, in ms, per layer (the parts repeat per layer). The block has no `comm_share` (compute
on a CPU is not slowed by communication the way SMs are) and the pipeline's own transfers are
left at 0: the prediction is of the chunks, not of the links.
"""

from __future__ import annotations

import statistics

from ....lang.spec import check_pipeline
from ....lang.syntax import parse_program
from ....lang.writer import replace_cost_block


def layer_parts(parts: list[tuple[str, bool]]) -> tuple[list[tuple[str, bool]], int] | None:
    """(one layer's parts, layers) when `parts` ((name, is an all-to-all) each) repeat one layer's
    names, else None."""
    names = [name for name, _ in parts]
    for size in range(1, len(names) + 1):
        if len(names) % size == 0 and names == names[:size] * (len(names) // size):
            return parts[:size], len(names) // size
    return None


def chunk_block(parts: list[tuple[str, bool]], timings: list[tuple[str, str, float]]) -> str | None:
    """The `chunk { }` of one stage from its parts ((name, is an all-to-all) each) and their timings,
    or None when the parts do not repeat per layer or some part was never timed."""
    layer = layer_parts(parts)
    if layer is None:
        return None
    one, layers = layer
    median = {}
    for section in ("F", "B", "W"):
        for name, _ in one:
            samples = [seconds for s, n, seconds in timings if s == section and n == name]
            if samples:
                median[(section, name)] = statistics.median(samples) * 1e3
    forward = [name for name, _ in one]
    backward = list(reversed(forward))
    if any(("F", n) not in median for n in forward) or any(("B", n) not in median for n in backward):
        return None
    lines = [f"layers = {layers}",
             "F { " + "  ".join(f"{n} = {median[('F', n)]:.4g}" for n in forward) + " }",
             "B { " + "  ".join(f"{n} = {median[('B', n)]:.4g}" for n in backward) + " }"]
    weights = [n for n in backward if ("W", n) in median]
    if weights:
        lines.append("W { " + "  ".join(f"{n} = {median[('W', n)]:.4g}" for n in weights) + " }")
    communication = [name for name, exchange in one if exchange]
    if communication:
        lines.append("communication = " + ", ".join(communication))
    return "chunk {\n    " + "\n    ".join(lines) + "\n  }"


def measured_cost_block(blocks: dict[int, str]) -> str:
    """The cost block: stage 0's chunk for every stage, each other stage's where it differs."""
    first = blocks[0]
    others = "".join(f"\n  stage {s} {{ {block} }}" for s, block in sorted(blocks.items()) if s and block != first)
    return f"cost {{  # chunk parts measured by schedc run --ep (ms, per layer)\n  {first}\n  comm = 0{others}\n}}"


def predicted_step(source_path: str, pipeline_name: str, block: str):
    """The pipeline of `source_path` with `block` as its cost block: (its text, the simulated
    timeline) or (text, None) when it does not compile (then the text says why in a comment)."""
    from ....compiler import compile_spec
    from ....errors import SchedError
    from ....simulate import exposed_communication, simulate

    text = open(source_path, encoding="utf-8").read()
    try:
        program = parse_program(text, source_path)
        ast = next(p for p in program.pipelines if p.name == pipeline_name)
        new_text = replace_cost_block(text, ast, block)
        spec = check_pipeline(next(p for p in parse_program(new_text, source_path).pipelines
                                   if p.name == pipeline_name))
        compiled = compile_spec(spec)
        timeline = simulate(compiled.spec, compiled.dag, compiled.plan)
        return new_text, timeline, exposed_communication(compiled.spec, compiled.plan)
    except (SchedError, StopIteration, ValueError) as error:
        return f"# the measured block did not compile: {error}", None, None
