"""What really ran: merge each rank's instruction timings (every step) into a Chrome trace and
compare the measured step with the simulated one (the profile that feeds the simulator is
profile/stage_times.py).

The measured step is `typical_step`: the median over the steps after the first (the first loads
kernels and allocates, so it warms up); with one step, that step. One step alone is noisy on a
shared machine.
"""

from __future__ import annotations

import json
import os
import statistics
from pathlib import Path

from ...lang.writer import write_whole
from ...simulate import Timeline


def write_rank_records(path: str, rank: int, steps, flights=None) -> None:
    """This rank's part of the measured trace, `steps` holding each step's records and `flights`
    each step's all-to-alls as (label, posted, finished) (merged by rank 0 after a barrier)."""
    rows = [{"step": step, "index": r.index, "op": str(r.instr), "kind": r.instr.kind.value, "start": r.start,
             "end": r.end, "waited": r.waited} for step, records in enumerate(steps) for r in records]
    rows += [{"step": step, "op": label, "kind": "all-to-all", "start": posted, "end": done, "lane": 1}
             for step, flown in enumerate(flights or []) for label, posted, done in flown]
    _write_whole(Path(f"{path}.rank{rank}"), json.dumps(rows))


def _write_whole(path: Path, text: str) -> None:
    """`text` written whole (`lang.writer.write_whole`), so a rank killed mid-write never leaves a
    half trace (or half of an old one)."""
    write_whole(path, text.encode("utf-8"))


def merge_trace(path: str, ranks: int, ep: int = 1) -> list[list[dict]]:
    """Chrome trace of every measured step (microseconds since the first step's common start; each
    slice's args name its step): per process a compute lane (its instructions) and, when it ran
    all-to-alls, a communication lane (each from posted to done). Returns each process's
    instruction rows."""
    parts = [json.loads(Path(f"{path}.rank{r}").read_text()) for r in range(ranks)]
    events = []
    for process, rows in enumerate(parts):
        name = f"rank {process // ep}" + (f" EP member {process % ep}" if ep > 1 else "")
        events.append({"ph": "M", "name": "process_name", "pid": process, "tid": 0,
                       "args": {"name": f"{name} (measured)"}})
        for lane, lane_name in ((0, "compute"), (1, "communication")):
            events.append({"ph": "M", "name": "thread_name", "pid": process, "tid": lane,
                           "args": {"name": lane_name}})
        for row in rows:
            args = {"step": row["step"]} | ({"waited_ms": row["waited"] * 1e3} if row.get("waited") else {})
            events.append({"ph": "X", "name": row["op"], "cat": row["kind"], "pid": process,
                           "tid": row.get("lane", 0), "ts": row["start"] * 1e6,
                           "dur": (row["end"] - row["start"]) * 1e6, "args": args})
    _write_whole(Path(path), json.dumps({"traceEvents": events, "displayTimeUnit": "ms"}))
    for r in range(ranks):
        os.remove(f"{path}.rank{r}")
    return [[row for row in rows if row.get("lane", 0) == 0] for rows in parts]


_COMPUTE = {"F", "B", "I", "W", "OVERLAP"}


def step_times(parts: list[list[dict]]) -> list[float]:
    """Each step's seconds, from its first instruction's start to its last one's end over all ranks."""
    steps = sorted({row["step"] for rows in parts for row in rows})
    rows_of = {step: [row for rows in parts for row in rows if row["step"] == step] for step in steps}
    return [max(r["end"] for r in rows_of[s]) - min(r["start"] for r in rows_of[s]) for s in steps]


def counted_steps(count: int) -> list[int]:
    """The steps the measured step is taken over: all but the first (a warm-up), or the only one."""
    return list(range(1, count)) if count > 1 else list(range(count))


def typical_step(times: list[float]) -> float:
    """The measured step: the median of `times` over `counted_steps`."""
    return statistics.median([times[s] for s in counted_steps(len(times))])


PROFILED_COSTS = "measured by schedc run --profile"  # on the `cost {` line profile/costblock.py writes


def costs_in_milliseconds(spec) -> bool:
    """Whether `spec`'s cost block is one `schedc run --profile` wrote, in milliseconds: its first
    line (in the file the spec was read from) carries `PROFILED_COSTS`. Any other block is in the
    user's own units."""
    ast = spec.source.ast
    block = next((b for b in (ast.blocks if ast else ()) if b.kind == "cost"), None)
    if block is None:
        return False
    try:
        lines = Path(block.span.file).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return False
    return block.span.line <= len(lines) and PROFILED_COSTS in lines[block.span.line - 1]


def _step_line(step: float, predicted: float, in_milliseconds: bool) -> str:
    """The measured step (`step`, seconds) beside the `predicted` makespan, with their ratio only
    when the prediction is in milliseconds."""
    measured = f"measured step {step * 1e3:.2f} ms; predicted step {predicted:.4g}"
    if not in_milliseconds:
        return (f"{measured} in the cost block's own units (simulated makespan): the units differ, so no "
                f"measured / predicted; a cost block from schedc run --profile --profile-out FILE is in ms")
    ratio = step * 1e3 / predicted if predicted else float("inf")
    return f"{measured} ms (simulated makespan of the profiled cost block); measured / predicted = {ratio:.3f}"


def compare_with_simulation(parts: list[list[dict]], timeline: Timeline, in_milliseconds: bool = False) -> str:
    """Measured step time (`typical_step`) and per-rank idle share (over the counted steps) beside
    the simulated (predicted) ones. measured / predicted only when the costs are `in_milliseconds`
    (a profiled cost block, `costs_in_milliseconds`); otherwise the line says the units differ."""
    times = step_times(parts)
    counted = counted_steps(len(times))
    step, predicted = typical_step(times), timeline.makespan
    over = (f"the median of the {len(counted)} step(s) after the first, a warm-up" if len(times) > 1
            else "one step; run --steps 3 or more for the median of the steps after the first")
    lines = [_step_line(step, predicted, in_milliseconds),
             f"measured step: {over}; every step, ms: " + ", ".join(f"{t * 1e3:.1f}" for t in times),
             f"{'rank':>4} {'busy ms':>9} {'idle share':>11} {'simulated idle share':>21}"]
    total = sum(times[s] for s in counted)
    idle_total = 0.0
    for rank, rows in enumerate(parts):
        busy = sum(r["end"] - r["start"] for r in rows if r["kind"] in _COMPUTE and r["step"] in counted)
        idle_total += total - busy
        sim = timeline.ranks[rank]
        lines.append(f"{rank:>4} {busy / len(counted) * 1e3:>9.2f} {(total - busy) / total:>11.1%} "
                     f"{sim.idle / timeline.makespan:>21.1%}")
    lines.append(f"bubble ratio: measured {idle_total / (total * len(parts)):.1%}, simulated "
                 f"{timeline.bubble_ratio:.1%}  (busy and idle: per step, over the counted steps)")
    return "\n".join(lines)
