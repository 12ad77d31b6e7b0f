"""The .sched language: text <-> PipelineSpec.

syntax.py parses text (grammar/schedc.lark, loaded as the schedc.grammar package's data) into a
located AST; spec.py checks the AST into a PipelineSpec, every error at its place, with values.py
(each written value: numbers bounded, words, choices, the op budget), costs.py (per-stage costs and
their invariants, and re-cutting a model's stages) and layers.py / layers_check.py (the `layers`
and `devices` blocks of `stages = auto`); writer.py writes a PipelineSpec (and a plan as a
hand-written order) back as canonical .sched text.

May import only schedc.errors and schedc.ir (the language describes values of the IR). Never imports
check/, the compiler, the DAG or anything above them: a file parses the same whatever the passes do.
"""
