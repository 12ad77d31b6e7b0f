"""The .sched language: text <-> PipelineSpec.

syntax.py parses text (grammar/schedc.lark, loaded as the schedc.grammar package's data) into a
located AST (parse_errors.py puts lark's failures in words a person knows); spec.py checks the AST
into a PipelineSpec, every error at its place, with values.py (each written value: numbers bounded, words, choices, the op budget), costs.py (per-stage costs and
their invariants, re-cutting a model's stages, and the `link { }` of transfers on a lane per rank) and layers.py / layers_check.py (the `layers`
and `devices` blocks of `stages = auto`), chunk.py (a stage's cost as parts per layer), recompute.py
(the `recompute { }` block and choice per stage); writer.py writes a PipelineSpec (and a plan as a
hand-written order) back as canonical .sched text. (Re-specifying a checked spec for another
family or placement, `with_family`, is compiler/recut.py's.)

The language describes values of the IR; chunk.py checks a `chunk { }` into the overlap model's
`Chunk` (schedc.overlap derives its F, B, W and F&B, pure arithmetic below the language), and
costs.py a `link { }` into its `Link` (overlap/lanes.py). It never
imports check/, the compiler, the DAG or anything above them: a file parses the same whatever the
passes do.

May import: errors, ir, overlap
Libraries at module level: lark
"""
