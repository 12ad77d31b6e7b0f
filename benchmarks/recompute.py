"""Recomputation as a memory lever: `search` with `recompute = auto` against the two fixed levers.

    python benchmarks/recompute.py            # every pipeline, search_time 5, optimal on the small ones
    python benchmarks/recompute.py --quick    # search_time 1, no optimal (about a minute)

Each pipeline is memory-tight (its limit below every family's need without recompute) and offers
two options on every stage: `full` (keeps 5% of the activation, costs a forward) and `attention`
(selective: keeps 60%, costs 0.3). For each one, the simulated step of
  (a) `search` without recompute (the order is the only lever),
  (b) the best family with `full` recompute on every stage (the usual fixed choice),
  (c) `search` with `recompute = auto` (the choice per stage and the order, together),
and (c) / min(a, b). The search may choose any placement (`placement = any`), as every family is
weighed in (b); the V rows hold the search to the V placement and (b) to the V families (zbv,
dualpipev), the like-for-like comparison at limit p/2. Then, on small ones (p = 4, m <= 8, the
backward unsplit so that a plan takes exactly as long as its folded form), `optimal` with
`recompute = auto`, which proves the optimum over every choice and order (docs/search.md,
"Recomputation"). Figures: docs/performance.md.
"""

from __future__ import annotations

import argparse
import time

from dataclasses import replace

from schedc.compiler import compile_spec, with_family
from schedc.compiler.recompute import describe_choice
from schedc.errors import SchedError
from schedc.lang.spec import FAMILIES, check_program
from schedc.lang.syntax import parse_program
from schedc.simulate import simulate

PIPELINES = [  # name, ranks, microbatches, placement of the search, limit, F, B, W, full's cost
    ("p4 m8, limit 2", 4, 8, "any", 2, 1, 2, 1, 1),
    ("p4 m16, limit 2", 4, 16, "any", 2, 1, 2, 1, 1),
    ("p4 m8, limit 1.5", 4, 8, "any", 1.5, 1, 2, 1, 1),
    ("p8 m16, limit 3", 8, 16, "any", 3, 1, 2, 1, 1),
    ("p4 m8, limit 2, B = 3", 4, 8, "any", 2, 1, 3, 1.5, 1),
    ("p4 m8, limit 2, full costs 0.5", 4, 8, "any", 2, 1, 2, 1, 0.5),
    ("V p4 m8, limit p/2", 4, 8, "v", 2, 1, 2, 1, 1),
    ("V p4 m16, limit p/2", 4, 16, "v", 2, 1, 2, 1, 1),
    ("V p8 m16, limit p/2", 8, 16, "v", 4, 1, 2, 1, 1),
]
V_FAMILIES = ("zbv", "dualpipev")  # (b) for a search held to the V placement
PROOFS = [  # name, ranks, microbatches, limit, F, B, full's cost: `optimal`, the backward unsplit
    ("p4 m4, limit 2", 4, 4, 2, 1, 2, 1),
    ("p4 m8, limit 2", 4, 8, 2, 1, 2, 1),
    ("p4 m8, limit 1.5", 4, 8, 1.5, 1, 2, 1),
    ("p4 m8, limit 2, B = 3, full 1.5", 4, 8, 2, 1, 3, 1.5),
    ("p4 m8, limit 1.2, F = 2", 4, 8, 1.2, 2, 2, 0.5),
]


def pipeline_text(ranks, m, placement, limit, f, b, w, full, schedule, recompute, search_time,
                  split="") -> str:
    return f"""pipeline bench {{{split}
  ranks = {ranks}
  microbatches = {m}
  schedule = {schedule}
  placement = {placement}
  search_time = {search_time}
  recompute = {recompute}
  cost {{ F = {f}  B = {b}  W = {w} }}
  memory {{ activation = 1  limit = {limit} }}
  recompute {{
    full {{ cost = {full}  keeps = 0.05 }}
    attention {{ cost = 0.3  keeps = 0.6 }}
  }}
}}
"""


def step(spec) -> tuple[float | None, object]:
    try:
        compiled = compile_spec(spec)
    except SchedError:
        return None, None
    return simulate(compiled.spec, compiled.dag, compiled.plan).makespan, compiled


def best_family_full(spec, families) -> tuple[float | None, str]:
    best, name = None, "-"
    for family in families:
        try:
            variant = with_family(spec, family)
        except SchedError:
            continue
        value, _ = step(replace(variant, recompute=("full",) * variant.num_stages))
        if value is not None and (best is None or value < best):
            best, name = value, family
    return best, name


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    budget = 1 if args.quick else 5
    print(f"search_time = {budget} s for (a) and (c); options: full (keeps 0.05), "
          "attention (keeps 0.6, cost 0.3)")
    print(f"{'pipeline':<31} {'(a) no rc':>9} {'(b) family+full':>19} {'(c) auto':>9} "
          f"{'c/min(a,b)':>10}  choice (c)")
    wins = ties = 0
    for name, ranks, m, placement, limit, f, b, w, full in PIPELINES:
        def text(schedule, recompute):
            return pipeline_text(ranks, m, placement, limit, f, b, w, full, schedule, recompute, budget)
        a, _ = step(check_program(parse_program(text("search", "none")))[0])
        auto = check_program(parse_program(text("search", "auto")))[0]
        fam, fam_name = best_family_full(auto, V_FAMILIES if placement == "v" else FAMILIES)
        began = time.perf_counter()
        c, compiled = step(auto)
        seconds = time.perf_counter() - began
        ratio = c / min(x for x in (a, fam) if x is not None)
        wins += ratio < 1 - 1e-9
        ties += abs(ratio - 1) <= 1e-9
        shown = "-" if a is None else f"{a:g}"
        print(f"{name:<31} {shown:>9} {fam:>9g} ({fam_name:>7}) {c:>9g} {ratio:>10.3f}  "
              f"{describe_choice(compiled.spec)}, {compiled.spec.placement} ({seconds:.1f} s)")
    print(f"(c) strictly faster than both on {wins} of {len(PIPELINES)}, as fast on {ties}")
    if args.quick:
        return
    print("\noptimal with recompute = auto (split_backward = false, so each plan takes exactly as long "
          "as its folded form), search_time 120; search (c) beside it")
    print(f"{'pipeline':<31} {'search':>8} {'optimal':>8}  proof")
    for name, ranks, m, limit, f, b, full in PROOFS:
        def text(schedule, t):
            return pipeline_text(ranks, m, "linear", limit, f, b, b / 2, full, schedule, "auto", t,
                                 "\n  split_backward = false")
        searched, _ = step(check_program(parse_program(text("search", budget)))[0])
        began = time.perf_counter()
        exact, solved = step(check_program(parse_program(text("optimal", 120)))[0])
        proven = "proven optimal over every recompute choice" in solved.search.found_by
        print(f"{name:<31} {searched:>8g} {exact:>8g}  {'proven' if proven else 'not proven'}, "
              f"{describe_choice(solved.spec)} ({time.perf_counter() - began:.1f} s)")


if __name__ == "__main__":
    main()
