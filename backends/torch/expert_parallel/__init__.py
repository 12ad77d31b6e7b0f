"""Expert parallelism in the run: MoE stages held by EP groups, their all-to-alls, and chunk parts
so an overlapped pair runs one microbatch's all-to-all while the other computes.
- parts.py: the chunk-parts contract (`Part`, `Exchange`, `run_parts`) a model
  file follows, and the executor (`ChunkRun`, `sequential`, `interleave`);
- groups.py: processes as (pipeline rank, EP member), the groups, expert sharding, the dense
  gradients' sum over a group, each member's part of a microbatch;
- steps.py: the rank program's EP steps (each member's batch, the scaled loss, the reference cut
  like a member, the step and exposed communication, `--compare-overlap`);
- chunk_profile.py: the parts a run timed as a `chunk { }` cost block, and the step it predicts;
- live.py: live expert balancing (`--rebalance-every`): token counts over a window, the plan,
  the imbalance and the decisions logged;
- migration.py: moving experts and their optimizer state between members, checksummed,
  committed only when every transfer has arrived; redundant slots.

A model file imports what it needs from here (`from schedc.backends.torch.expert_parallel import
Part, Exchange, run_parts`).

May import: errors, ir, lang, compiler, simulate, experts
Libraries at module level: torch
"""

from .groups import (ExpertParallel, join_groups, member_slice, shard_experts, sum_dense_gradients,
                     sync_gradients)
from .parts import ChunkRun, Exchange, Part, interleave, parts_of, run_parts, sequential

__all__ = ["ChunkRun", "Exchange", "ExpertParallel", "Part", "interleave", "join_groups",
           "member_slice", "parts_of", "run_parts", "sequential", "shard_experts", "sum_dense_gradients",
           "sync_gradients"]
