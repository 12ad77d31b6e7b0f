"""The optimizer: schedules found, not handcrafted, under a memory limit, and how far from optimal.

- `problem`: a pipeline as flat integer-indexed arrays (ops, ranks, durations, dependencies,
  memory per op) that the hot loops read.
- `evaluate`: the fast evaluator of a fixed per-rank order (cross-checked against `simulate`).
- `list_scheduler`: a priority list scheduler (Giffler-Thompson active schedules, or the serial
  scheme that lets a rank wait for memory) under the memory limit.
- `rules`: the priority rules the search starts from, and the memory levels it tries.
- `local_search`: the search itself: family seeds, priority rules, seeded local search within a time budget.
- `bound`: a lower bound on any plan's makespan, and the smallest memory limit any plan can meet.
- `strategy`: the compiler's entry (`find_order`): the limit checked, then the heuristic, CP-SAT or both.
- `exact`: the exact model for OR-Tools CP-SAT (optional: `pip install schedc[optimal]`).
- `progress`: progress reports for a caller that asks (`reporting`), and the Ctrl-C contract: a
  search stopped by Ctrl-C returns its best plan so far with `SearchResult.interrupted` set.

May import the ground floor (errors, ir, dag), lang/, schedules/ (the families, as seeds),
passes/, check/ and simulate; the compiler imports it (`schedule = search`, `optimal`, `auto`), so
it never imports the compiler. Must not import cli/, viz/, interop/ or backends/, nor torch.
`ortools` is imported lazily, only by `exact`.

May import: errors, ir, dag, gcpause, lang, schedules, passes, check, simulate
Libraries at module level: none
Libraries inside functions: ortools
"""
