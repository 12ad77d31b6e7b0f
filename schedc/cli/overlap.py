"""`schedc overlap FILE`: what the overlap model derives from each stage's `chunk { }`.

Per stage (stages with the same chunk printed once): F, B, W and F&B, the best order of an
overlapped forward-backward pair on the compute and communication lanes, the share of the pair's
communication hidden under compute, and DeepSeek's order beside it (optimal for these parts, or
how much longer); `--json` for the same as data, `-o pair.svg|png` draws one stage's pair.
"""

from __future__ import annotations

import json
import sys

from ..lang.chunk import derive_chunk, stage_chunks
from .common import UsageError, load_specs, output_format, select_pipelines, to_png, write_output


def _stages_of(spec, only: int | None):
    """[(stages, chunk)] for each distinct chunk (in stage order), or only stage `only`'s."""
    chunks = stage_chunks(spec)
    if not chunks or not any(chunks):
        raise UsageError(f"pipeline {spec.name} has no `chunk {{ }}` in its cost block: nothing to "
                         "derive (see docs/language.md, \"Chunk parts\")")
    if only is not None:
        if not 0 <= only < len(chunks) or chunks[only] is None:
            having = [s for s, c in enumerate(chunks) if c is not None]
            raise UsageError(f"--stage {only}: pipeline {spec.name} has a chunk on stages "
                             f"{_stage_list(having)}")
        return [([only], chunks[only])]
    groups: dict = {}
    for stage, chunk in enumerate(chunks):
        if chunk is not None:
            groups.setdefault(chunk, []).append(stage)
    return [(stages, chunk) for chunk, stages in groups.items()]


def _stage_list(stages: list[int]) -> str:
    if len(stages) > 2 and stages == list(range(stages[0], stages[-1] + 1)):
        return f"{stages[0]}-{stages[-1]}"
    return ", ".join(str(s) for s in stages)


def _record(stages, chunk) -> dict:
    d = derive_chunk(chunk)
    return {"stage": stages[0], "stages": stages, "layers": chunk.layers, "comm_share": chunk.comm_share,
            "F": d.F, "B": d.B, "W": d.W, "F&B": d.FB, "hidden_comm": d.hidden_comm,
            "sequential": d.F + d.B, "compute": d.compute, "comm": d.comm,
            "proven": d.proven, "lower_bound": d.lower_bound,
            "order": {"compute": list(d.best.compute), "comm": list(d.best.comm)},
            "deepseek": {"F&B": d.deepseek.makespan, "hidden_comm": d.deepseek.hidden_comm,
                         "optimal": d.deepseek_optimal,
                         "order": {"compute": list(d.deepseek.compute), "comm": list(d.deepseek.comm)}}}


def _format(spec, records) -> str:
    lines = [f"pipeline {spec.name}: the overlap model of each stage's chunk (docs/schedules.md, "
             "\"Chunk parts\")"]
    for r in records:
        proof = "proven optimal" if r["proven"] else f"best found; proven >= {r['lower_bound']:g}"
        ds = r["deepseek"]
        verdict = ("optimal for these parts" if ds["optimal"] else
                   f"{ds['F&B'] - r['F&B']:.4g} longer than the best" if ds["F&B"] > r["F&B"] + 1e-9
                   else "as good as the best found")
        lines += [
            f"stage {_stage_list(r['stages'])}: {r['layers']} layer(s), comm_share {r['comm_share']:g}",
            f"  F {r['F']:g}   B {r['B']:g}   W {r['W']:g}   F&B {r['F&B']:g} ({proof})",
            f"  sequential F + B {r['sequential']:g}; max(compute {r['compute']:g}, communication "
            f"{r['comm']:g}) {max(r['compute'], r['comm']):g}",
            f"  communication hidden in the pair: {r['hidden_comm']:.1%}",
            f"  DeepSeek's order: F&B {ds['F&B']:g}, {ds['hidden_comm']:.1%} hidden ({verdict})",
            f"  compute lane: {' '.join(r['order']['compute'])}",
            f"  comm lane:    {' '.join(r['order']['comm']) or '-'}",
        ]
    return "\n".join(lines)


def cmd_overlap(args) -> int:
    from ..viz.pair import format_pair_svg

    fmt = output_format(args.output, None, ("svg", "png"), "a pair picture") if args.output else None
    _source, specs = load_specs(args.file)
    [spec] = select_pipelines(specs, args.pipeline, single=True)
    groups = _stages_of(spec, args.stage)
    records = [_record(stages, chunk) for stages, chunk in groups]
    if args.output:
        stages, chunk = groups[0]
        svg = format_pair_svg(derive_chunk(chunk), f"pipeline {spec.name}, stage {_stage_list(stages)}")
        write_output(svg if fmt == "svg" else to_png(svg), args.output, [args.file])
    if args.json:
        sys.stdout.write(json.dumps({"pipeline": spec.name, "stages": records}, indent=2) + "\n")
    else:
        print(_format(spec, records))
    return 0


def register(sub) -> None:
    """Add `overlap` to the `schedc` parser's subcommands."""
    p = sub.add_parser("overlap", help="derive F, B, W and F&B from each stage's chunk parts and "
                       "show the best overlapped pair")
    p.add_argument("file")
    p.add_argument("--pipeline")
    p.add_argument("--stage", type=int, help="only this stage (default: every distinct chunk)")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    p.add_argument("-o", "--output", help="draw the pair on two lanes: NAME.svg or NAME.png")
    p.set_defaults(func=cmd_overlap)
