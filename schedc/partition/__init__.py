"""The stage partitioner: which layers each pipeline stage holds, chosen by the schedule's
simulated step under the per-rank memory limits (`schedc partition`, and `stages = auto` in a
.sched file).

- problem.py: `PartitionProblem` (layers, pipeline, devices, pins) and what a split means on the
  cost model: stage costs, activations, parameters per rank, the split's spec.
- minmax.py: the min-max bottleneck split, exactly, by dynamic programming (and the suffix
  tables the search bounds with).
- resimulate.py: `FastPlan`: one compiled plan re-timed under many stage costs.
- evaluate.py: `Evaluator`: one split scored (simulated step, slowest stage, memory per rank).
- best_split.py: `choose_split`: the branch and bound over splits for the least simulated step.
- anchors.py: the splits Megatron, torchtitan and DeepSpeed would choose, to set beside ours.
- compare.py: `build_report`: our split and the anchors' scored by one evaluator; `layer_ranks`.
- formats.py: a split as Megatron's layout string, DeepSpeed's parts, torchtitan's names and a
  .sched cost block.
- auto_stages.py: `stages = auto`: `resolve_stages` turns a spec with a layers block into the
  spec of the chosen split.
- layers_json.py: reading a profiler's layer description (JSON) into a `LayerModel`.

The command line's table and JSON are cli/partition.py's.

May import: errors, ir, dag, lang, check, simulate, compiler
Libraries at module level: none
Must not import experts/ (the expert balancer), cli/ or backends/.
"""
