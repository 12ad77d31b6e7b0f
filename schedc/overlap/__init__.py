"""Communication as a resource: from a chunk's parts (per layer: attention, all-to-all dispatch,
MoE MLP, all-to-all combine; the backward split into B and W parts) to the cost block's F, B, W
and F&B, and the best order of an overlapped forward-backward pair on two lanes (DualPipe's
F&B, DeepSeek-V3 technical report section 3.2, Figure 4).

- chunk.py: the values (`Part`, `Chunk`), their rules (`check_chunk`), the dependencies, and the
  pair as flat arrays (`PairProblem`, `build_problem`).
- pair.py: the two-lane model and its evaluator, an event simulation with the compute slowdown
  while communication runs (`simulate_lanes`, `evaluate_pair`, `PairSchedule`).
- deepseek.py: DeepSeek's interleaving of the two chunks' parts, for any parts (`deepseek_order`).
- bound.py: lower bounds on any pair schedule's makespan (`lower_bound`, `work_bound`).
- fast.py: the search's own stepping of the event simulation, and the lower bound of a state.
- best.py: the exact search, best-first branch and bound with dominance (`search_best`).
- derive.py: `derive_costs(chunk) -> Derived` (F, B, W, F&B, the best and DeepSeek's schedules).
- lanes.py: the pipeline's own transfers on a communication lane per rank (`Link`, the cost
  block's `link { }`; `simulate_with_lanes`, the event simulation simulate.py runs with a link).
- measured.py: the check against a measured pair (`check_measured`): is the derived F&B within 10%
  of a trace's span where sequential F + B and max(compute, comm) are not.

Pure values and functions; lang/chunk.py (a `chunk { }` block), lang/costs.py (a `link { }`),
simulate.py (the lanes) and viz/pair.py (the picture) use them.
May import: errors
Libraries at module level: none
Libraries inside functions: none
"""

from .chunk import Chunk, Part, check_chunk
from .deepseek import deepseek_order
from .derive import Derived, derive_costs
from .measured import MeasuredCheck, check_measured
from .pair import PairSchedule, Slice, evaluate_pair

__all__ = ["Chunk", "Derived", "MeasuredCheck", "PairSchedule", "Part", "Slice", "check_chunk",
           "check_measured", "deepseek_order", "derive_costs", "evaluate_pair"]
