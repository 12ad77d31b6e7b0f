"""schedc: a compiler for pipeline-parallel training schedules.

    import schedc
    [spec] = schedc.load("examples/dualpipe.sched")   # or schedc.parse(text, "name.sched")
    compiled = schedc.compile(spec)                    # verified per-rank instruction lists
    print(compiled.plan)                               # the text form, one line per rank
    timeline = schedc.simulate(compiled)               # makespan, bubble, per-rank figures

May import: errors, ir, lang, compiler, simulate, partition
Libraries at module level: none
"""

from __future__ import annotations

from pathlib import Path

from .compiler import Compiled, compile_spec, with_family
from .errors import SchedError, SourceFile, decode_source, render_error
from .ir import Instr, OpKind, Plan, format_plan_text
from .simulate import Timeline
from .simulate import simulate as _simulate
from .lang.spec import PipelineSpec, check_program
from .lang.syntax import parse_program

__all__ = ["parse", "load", "compile", "simulate", "Compiled", "PipelineSpec", "Plan", "Instr",
           "OpKind", "Timeline", "SchedError", "SourceFile", "render_error", "format_plan_text",
           "with_family"]
__version__ = "0.1.0"


def parse(text: str, file: str = "<input>") -> list[PipelineSpec]:
    """Parse and check .sched text; one `PipelineSpec` per `pipeline` block. A pipeline with
    `stages = auto` gets the split of its layers that the partitioner chooses."""
    specs = check_program(parse_program(text, file))
    if not any(s.layers is not None for s in specs):
        return specs
    from .partition.auto_stages import resolve_stages  # only pipelines with layers need it

    return [resolve_stages(s) for s in specs]


def load(path: str | Path) -> list[PipelineSpec]:
    """`parse` the file at `path`."""
    path = Path(path)
    return parse(decode_source(path.read_bytes(), str(path)), str(path))


def compile(spec: PipelineSpec) -> Compiled:  # noqa: A001 - the verb users expect
    """Compile a spec into a verified plan (see `schedc.compiler.compile_spec`)."""
    return compile_spec(spec)


def simulate(compiled: Compiled) -> Timeline:
    """Predict the timeline of a compiled plan."""
    return _simulate(compiled.spec, compiled.dag, compiled.plan)
