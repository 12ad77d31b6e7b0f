"""`schedc run --profile`: measure what a model's stages and transfers cost, as a cost block for
the .sched file, calibrated by a short run of the plan.
- driver.py: `profile`, what the command line calls: times, prints, makes and calibrates the block;
- stage_times.py: each stage's F, B, I, W and F&B timed round-robin with the runner's own compute;
- layer_costs.py: a `build_layers()` model's per-layer costs, the description `schedc partition` reads;
- comm.py: each transfer's time and the sender's cost of posting it, measured between two
  processes, or computed from a bandwidth;
- contention.py: companion processes computing as the host's other ranks would, so a CPU profile
  is timed under a run's contention;
- costblock.py: the cost block from those figures, each cross-rank send charged to its op;
- calibrate.py: the block recalibrated from a traced run of the plan;
- fit.py: the block's transfer delay fitted to that run's whole step;
- chunk_parts.py: a chunk-parts model's parts timed (all-to-alls on an EP group), a `chunk { }` block;
- activation_memory.py: `schedc run --memory`, the activations autograd really saves, per rank,
  beside the simulator's peak.

May import: errors, ir, lang, compiler, partition, simulate
Libraries at module level: torch
"""
