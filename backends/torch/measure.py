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


def write_rank_records(path: str, rank: int, steps) -> None:
    """This rank's part of the measured trace, `steps` holding each step's records (merged by
    rank 0 after a barrier)."""
    rows = [{"step": step, "index": r.index, "op": str(r.instr), "kind": r.instr.kind.value, "start": r.start,
             "end": r.end} for step, records in enumerate(steps) for r in records]
    _write_whole(Path(f"{path}.rank{rank}"), json.dumps(rows))


def _write_whole(path: Path, text: str) -> None:
    """`text` written whole (`lang.writer.write_whole`), so a rank killed mid-write never leaves a
    half trace (or half of an old one)."""
    write_whole(path, text.encode("utf-8"))


def merge_trace(path: str, ranks: int) -> list[list[dict]]:
    """Chrome trace of every measured step (microseconds since the first step's common start; each
    slice's args name its step). Returns each rank's rows."""
    parts = [json.loads(Path(f"{path}.rank{r}").read_text()) for r in range(ranks)]
    events = []
    for rank, rows in enumerate(parts):
        events.append({"ph": "M", "name": "process_name", "pid": rank, "tid": 0,
                       "args": {"name": f"rank {rank} (measured)"}})
        for row in rows:
            events.append({"ph": "X", "name": row["op"], "cat": row["kind"], "pid": rank, "tid": 0,
                           "ts": row["start"] * 1e6, "dur": (row["end"] - row["start"]) * 1e6,
                           "args": {"step": row["step"]}})
    _write_whole(Path(path), json.dumps({"traceEvents": events, "displayTimeUnit": "ms"}))
    for r in range(ranks):
        os.remove(f"{path}.rank{r}")
    return parts


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


def compare_with_simulation(parts: list[list[dict]], timeline: Timeline) -> str:
    """Measured step time (`typical_step`) and per-rank idle share (over the counted steps) beside
    the simulated (predicted) ones. The prediction is in the cost block's units: milliseconds when
    it came from `--profile`."""
    times = step_times(parts)
    counted = counted_steps(len(times))
    step, predicted = typical_step(times), timeline.makespan
    over = (f"the median of the {len(counted)} step(s) after the first, a warm-up" if len(times) > 1
            else "one step; run --steps 3 or more for the median of the steps after the first")
    lines = [f"measured step {step * 1e3:.2f} ms; predicted step {predicted:.4g} (simulated makespan, in the "
             f"cost block's units: ms when it came from --profile); measured / predicted = "
             f"{step * 1e3 / predicted if predicted else float('inf'):.3f}",
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
