"""`schedc compile`, `check`, `simulate` and `compare`: the compiler's own commands."""

from __future__ import annotations

import json
import re
import sys
from dataclasses import replace

from ..compiler import Compiled, compile_spec
from ..errors import SchedError
from ..ir import format_plan_text, plan_to_json
from ..lang.spec import FAMILIES, PipelineSpec, spec_to_json
from ..lang.writer import format_pipeline
from ..schedules.closed_forms import closed_form, parameter_copies
from ..compiler.recompute import describe_choice, recompute_bound
from ..lang.recompute import AUTO
from ..search.bound import Bound
from ..search.progress import TerminalReporter, reporting
from ..simulate import Timeline, exposed_communication, simulate
from ..viz.grid import format_grid
from .common import (UsageError, check_folder, family_of, load_specs, parse_families, print_error,
                     select_pipelines, write_output)


def _header(spec: PipelineSpec, many: bool) -> str:
    return f"# pipeline {spec.name}\n" if many else ""


def cmd_compile(args) -> int:
    check_folder(args.output)
    _source, specs = load_specs(args.file)
    specs = select_pipelines(specs, args.pipeline, single=args.format == "json")
    chunks = []
    for spec in specs:
        compiled = compile_searching(spec, args)
        chunks.append(_header(spec, len(specs) > 1) + _format_compiled(compiled, args))
        if interrupted(compiled):  # Ctrl-C: the plans so far, then stop
            write_output("".join(chunks), args.output, [args.file], force=args.force)
            return report_interrupted()
    write_output("".join(chunks), args.output, [args.file], force=args.force)
    return 0


def _format_compiled(compiled: Compiled, args) -> str:
    if args.dump == "dag":
        dag = compiled.dag
        edges = sorted(dag.edges(), key=lambda e: (e[1], e[0]))
        return "".join(f"{a} -> {b}{' (cross-rank)' if dag.is_cross_rank(a, b) else ''}\n"
                       for a, b in edges)
    if args.dump == "order":
        return format_plan_text(compiled.order)
    if args.format == "json":
        return json.dumps(plan_to_json(compiled.plan, spec_to_json(compiled.spec)), indent=1) + "\n"
    if args.format == "sched":  # a whole pipeline whose hand-written order is this plan
        return format_pipeline(compiled.spec, compiled.plan.ranks)
    if args.format == "grid":  # compute instructions only, to stay compact
        return format_grid(tuple(tuple(x for x in row if x.is_compute) for row in compiled.plan.ranks))
    return format_plan_text(compiled.plan)


def _bound_of(compiled: Compiled):
    """The lower bound of the compiled pipeline; CP-SAT's proven bound when it is higher."""
    bound = recompute_bound(compiled.spec)  # lower_bound itself without recompute
    proven = getattr(compiled.search, "proven_bound", None)
    if proven is not None and proven > bound.value + 1e-9:
        return Bound(proven, "CP-SAT's proof", bound.parts)
    return bound


def _family_step(compiled: Compiled, family: str) -> float | None:
    """The simulated step of `family`'s own plan for the same model, None when it does not compile."""
    try:
        plan = compile_spec(family_of(compiled.spec, family))
    except SchedError:
        return None
    return simulate(plan.spec, plan.dag, plan.plan).makespan


def found_by_lines(compiled: Compiled, makespan: float) -> list[str]:
    """What found the plan; a family's order the search improved says by how much (the family's
    own plan beside the searched one)."""
    found = compiled.search
    if found is None:
        return []
    how = found.found_by
    seeded = re.fullmatch(r"the (\S+) family", how)
    if seeded and seeded[1] in FAMILIES:
        own = _family_step(compiled, seeded[1])
        if own is not None and own > makespan + 1e-9:
            how += f", improved by the search from {own:g} to {makespan:g}"
    return [f"found by      {how} ({found.evaluations} list schedules, {found.seconds:.1f} s)"]


def _chosen(asked: PipelineSpec, compiled: Compiled) -> list[str]:
    """What `placement = any` chose, in words."""
    if len(asked.placements) < 2:
        return []
    return [f"placement     {compiled.spec.placement} (placement = any: the best of "
            f"{', '.join(asked.placements)})"]


def _timeline_table(asked: PipelineSpec, compiled: Compiled, timeline: Timeline, bound) -> str:
    spec = compiled.spec
    auto = " (chosen by schedule = auto)" if asked.schedule == "auto" else ""
    lines = [f"pipeline {spec.name}: {spec.schedule}{auto}, {spec.ranks} ranks, {spec.microbatches} "
             f"microbatches, {spec.num_stages * spec.directions} stage replicas", *_chosen(asked, compiled),
             *found_by_lines(compiled, timeline.makespan),
             *([f"recompute     {describe_choice(spec)}"] if spec.recompute else []),
             f"makespan      {timeline.makespan:g}",
             f"lower bound   {bound.value:g} ({bound.source}); gap {bound.gap(timeline.makespan):.2%}",
             f"bubble        {timeline.bubble:g} (largest idle time of a rank)",
             f"bubble ratio  {timeline.bubble_ratio:.4f} (idle / (ranks x makespan))",
             "", f"{'rank':>4} {'busy':>10} {'idle':>10} {'peak activations':>17}"]
    for r in timeline.ranks:
        lines.append(f"{r.rank:>4} {r.busy:>10g} {r.idle:>10g} {r.peak_activations:>17g}")
    path = " ".join(f"{s.instr}@{s.rank}" for s in timeline.critical_path)
    lines += ["", f"critical path ({len(timeline.critical_path)} instructions): {path}"]
    return "\n".join(lines) + "\n"


def cmd_simulate(args) -> int:
    _source, specs = load_specs(args.file)
    specs = select_pipelines(specs, args.pipeline, single=args.json)
    out = []
    for spec in specs:
        compiled = compile_searching(spec, args)
        timeline = simulate(compiled.spec, compiled.dag, compiled.plan)
        bound = _bound_of(compiled)
        if args.json:
            obj = {"pipeline": spec.name, "schedule": compiled.spec.schedule,
                   "placement": compiled.spec.placement, **timeline.to_json(),
                   "lower_bound": bound.value, "lower_bound_source": bound.source,
                   "gap": bound.gap(timeline.makespan),
                   **({"recompute": list(compiled.spec.recompute)} if compiled.spec.recompute else {})}
            if compiled.search is not None:
                obj["found_by"] = compiled.search.found_by
            if interrupted(compiled):
                obj["interrupted"] = True
            out.append(json.dumps(obj, indent=1) + "\n")
        else:
            out.append(_timeline_table(spec, compiled, timeline, bound))
        if interrupted(compiled):  # Ctrl-C: this pipeline's best plan so far, and stop
            sys.stdout.write("\n".join(out))
            return report_interrupted()
    sys.stdout.write("\n".join(out))
    return 0


INTERRUPTED = 130  # as cli/main.py exits on Ctrl-C: 128 + SIGINT


def compile_searching(spec: PipelineSpec, args) -> Compiled:
    """`compile_spec`, with a search's progress on standard error when it is a terminal (not
    with --quiet); see search/progress.py."""
    with reporting(TerminalReporter(sys.stderr, quiet=getattr(args, "quiet", False))):
        return compile_spec(spec)


def interrupted(compiled: Compiled) -> bool:
    """Whether Ctrl-C stopped the search or CP-SAT that made this plan (the best so far)."""
    return bool(getattr(compiled.search, "interrupted", False))


def report_interrupted() -> int:
    print("schedc: interrupted: the search stopped early; the plan shown is the best it had found, "
          "not proven optimal", file=sys.stderr)
    return INTERRUPTED


def cmd_check(args) -> int:
    """Check every file named, whatever happens to the others; the status is the worst one
    (2 for a file that cannot be read, 1 for a file with errors, 0 when all are fine). With
    --json, one object: each file's status, pipelines and errors (with their places)."""
    status, results = 0, []
    for path in args.files:
        result = _check_file(path, quiet=args.json)
        status = max(status, {"ok": 0, "errors": 1, "unreadable": 2}[result["status"]])
        results.append(result)
    if args.json:
        print(json.dumps({"status": status, "files": results}, indent=1))
    return status


def _check_file(path: str, quiet: bool) -> dict:
    """One file checked: {"file", "status": ok | errors | unreadable, "pipelines", "errors"}; the
    verdict printed unless `quiet`."""
    try:
        _source, specs = load_specs(path)
        for spec in specs:
            compile_spec(spec)
    except SchedError as error:
        if not quiet:
            print_error(error, path)
        return {"file": path, "status": "errors", "pipelines": [],
                "errors": [_diagnostic_json(d) for d in error.diagnostics]}
    except UsageError as error:
        if not quiet:
            print(f"schedc: error: {error}", file=sys.stderr)
        return {"file": path, "status": "unreadable", "pipelines": [], "errors": [{"message": str(error)}]}
    if not quiet:
        print(f"{path}: ok ({len(specs)} pipeline{'s' if len(specs) != 1 else ''})")
    return {"file": path, "status": "ok", "pipelines": [s.name for s in specs], "errors": []}


def _place_json(span) -> dict:
    if span is None:
        return {}
    return {"file": span.file, "line": span.line, "col": span.col, "end_line": span.end_line,
            "end_col": span.end_col}


def _diagnostic_json(diagnostic) -> dict:
    """A diagnostic as data: the message, its place (when it has one) and its notes."""
    return {"message": diagnostic.message, **_place_json(diagnostic.span),
            "notes": [{"message": n.message, **_place_json(n.span)} for n in diagnostic.notes]}


def _compare_row(spec: PipelineSpec) -> dict:
    compiled = compile_spec(spec)
    timeline = simulate(compiled.spec, compiled.dag, compiled.plan)
    form = closed_form(compiled.spec)
    if any(c != "none" for c in compiled.spec.recompute):  # the families' forms have no R ops
        form = replace(form, bubble=None, exact=False, formula="no closed form with recompute")
    comm = exposed_communication(compiled.spec, compiled.plan)
    if timeline.linked:  # the transfers on each rank's lane, and the time its compute waited on them
        comm = tuple((total + r.lane_busy, exposed + r.lane_exposed)
                     for (total, exposed), r in zip(comm, timeline.ranks))
    return {"family": spec.schedule, "ranks": spec.ranks, "stages": spec.num_stages,
            "communication": max(total for total, _ in comm),
            "exposed_communication": max(exposed for _, exposed in comm),
            "makespan": timeline.makespan, "bubble": timeline.bubble,
            "closed_form": form.bubble, "closed_form_exact": form.exact, "formula": form.formula,
            "bubble_ratio": timeline.bubble_ratio,
            "peak_activations": max(r.peak_activations for r in timeline.ranks),
            "parameter_copies": parameter_copies(spec),
            **({"recompute": describe_choice(compiled.spec)} if spec.recompute else {}),
            **({"interrupted": True} if interrupted(compiled) else {})}


def cmd_compare(args) -> int:
    _source, specs = load_specs(args.file)
    [spec] = select_pipelines(specs, args.pipeline, single=True)
    families = parse_families(args.schedules) if args.schedules else list(FAMILIES)
    rows, skipped = [], []
    for family in families:
        try:
            rows.append(_compare_row(_cheapest_recompute(family_of(spec, family))))
        except SchedError as error:
            skipped.append((family, error.diagnostics[0].message))
            continue
        if rows[-1].get("interrupted"):  # Ctrl-C in a search: the rows so far, then stop
            break
    if args.json:
        print(json.dumps({"pipeline": spec.name, "rows": rows,
                          "skipped": [{"family": f, "reason": r} for f, r in skipped]}, indent=1))
        return report_interrupted() if rows and rows[-1].get("interrupted") else 0
    print(_compare_table(spec, rows, skipped), end="")
    return report_interrupted() if rows and rows[-1].get("interrupted") else 0


def _cheapest_recompute(spec: PipelineSpec) -> PipelineSpec:
    """With a recompute block, each family runs with the cheapest choice that makes it fit
    (`recompute = auto` on every stage a file leaves on none)."""
    if not spec.recompute or spec.schedule in ("auto", "search", "optimal"):
        return spec
    return replace(spec, recompute=tuple(AUTO if c == "none" else c for c in spec.recompute))


def _compare_table(spec: PipelineSpec, rows: list[dict], skipped) -> str:
    head = (f"{'family':<11} {'stages':>6} {'makespan':>9} {'bubble':>8} {'closed form':>12} "
            f"{'ratio':>7} {'peak act':>9} {'params':>7}  formula (in the family's stage costs)")
    lines = [f"pipeline {spec.name}: {spec.ranks} ranks, {spec.microbatches} microbatches, the same "
             f"model in every family (a family with k x {spec.num_stages} stages runs each at 1/k of "
             "the file's stage costs)",
             "bubble = largest idle time of a rank; peak act in the file's stage activations; params = "
             "per rank, x model/ranks", head]
    chunked = any(r["communication"] > 0 for r in rows)
    if chunked:  # the file's chunks carry communication: how much of it each family hides
        lines[1] += ("; exposed = the communication of a rank's ops no compute hid (the most of any "
                     "rank), hidden = the rest")
        if spec.link:
            lines[1] += ("; with the link, a rank's communication counts its lane's transfers and "
                         "its exposed part the time its compute waited on them")
        lines[2] = head.replace("  formula", f" {'exposed':>8} {'hidden':>7}  formula")
    for r in rows:
        form = "-" if r["closed_form"] is None else f"{r['closed_form']:g}"
        if r["closed_form"] is not None and not r["closed_form_exact"]:
            form = f"<={form}"
        comm = ""
        if chunked:
            hidden = max(0.0, 1 - r["exposed_communication"] / r["communication"]) if r["communication"] else 0
            comm = f" {r['exposed_communication']:>8.4g} {hidden:>7.1%}"
        lines.append(f"{r['family']:<11} {r['stages']:>6} {r['makespan']:>9g} {r['bubble']:>8g} "
                     f"{form:>12} {r['bubble_ratio']:>7.4f} {r['peak_activations']:>9g} "
                     f"{r['parameter_copies']:>6g}x{comm}  {r['formula']}"
                     + (f"; recompute: {r['recompute']}" if "recompute" in r else ""))
    for family, reason in skipped:
        lines.append(f"{family:<11} skipped: {reason}")
    return "\n".join(lines) + "\n"


def _add_quiet(parser) -> None:
    parser.add_argument("--quiet", action="store_true", help="no progress line on standard error while "
                        "a search runs (there is none when standard error is not a terminal)")


def register(sub) -> None:
    """Add compile, simulate, check and compare to the `schedc` parser's subcommands."""
    p = sub.add_parser("compile", help="print the verified per-rank instruction lists")
    p.add_argument("file")
    p.add_argument("--pipeline", help="the pipeline to compile when the file has several")
    p.add_argument("--format", choices=("text", "json", "grid", "sched"), default="text",
                   help="text: one line per rank; json: the versioned JSON form; grid: a step x rank "
                   "table of compute ops; sched: a .sched pipeline with this plan as its order")
    p.add_argument("--dump", choices=("dag", "order"), help="print an intermediate value instead: "
                   "the dependency DAG, or the family's compute order before fusion and lowering")
    p.add_argument("-o", "--output", help="write here instead of standard output")
    p.add_argument("--force", action="store_true", help="overwrite an existing .sched output file")
    _add_quiet(p)
    p.set_defaults(func=cmd_compile)

    p = sub.add_parser("simulate", help="predict makespan, bubble and per-rank busy/idle/memory")
    p.add_argument("file")
    p.add_argument("--pipeline")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    _add_quiet(p)
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser("check", help="verify files; exit 0 when all are fine, 1 when one has errors, "
                       "2 when one cannot be read", description="Verify every file named, going on "
                       "past bad or unreadable ones. Exit status: 0 when all are fine, 1 when one has "
                       "errors (each printed with its place), 2 when one cannot be read.")
    p.add_argument("files", nargs="+")
    p.add_argument("--json", action="store_true", help="print one JSON object: the status and, per "
                   "file, its status (ok, errors, unreadable), pipelines and errors with their places")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("compare", help="the same pipeline under several families, side by side")
    p.add_argument("file")
    p.add_argument("--pipeline")
    p.add_argument("--schedules", help=f"comma-separated families, or search and optimal (default: all of {','.join(FAMILIES)})")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_compare)
