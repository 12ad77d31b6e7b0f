"""What really ran: merge each rank's instruction timings into a Chrome trace and compare the
measured step with the simulated one (the profile that feeds the simulator is profiler.py)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from ...simulate import Timeline


def write_rank_records(path: str, rank: int, records) -> None:
    """This rank's part of the measured trace (merged by rank 0 after a barrier)."""
    rows = [{"index": r.index, "op": str(r.instr), "kind": r.instr.kind.value, "start": r.start, "end": r.end}
            for r in records]
    Path(f"{path}.rank{rank}").write_text(json.dumps(rows))


def merge_trace(path: str, ranks: int) -> list[list[dict]]:
    """Chrome trace of the measured step (microseconds since the step's common start)."""
    parts = [json.loads(Path(f"{path}.rank{r}").read_text()) for r in range(ranks)]
    events = []
    for rank, rows in enumerate(parts):
        events.append({"ph": "M", "name": "process_name", "pid": rank, "tid": 0,
                       "args": {"name": f"rank {rank} (measured)"}})
        for row in rows:
            events.append({"ph": "X", "name": row["op"], "cat": row["kind"], "pid": rank, "tid": 0,
                           "ts": row["start"] * 1e6, "dur": (row["end"] - row["start"]) * 1e6})
    Path(path).write_text(json.dumps({"traceEvents": events, "displayTimeUnit": "ms"}))
    for r in range(ranks):
        os.remove(f"{path}.rank{r}")
    return parts


_COMPUTE = {"F", "B", "I", "W", "OVERLAP"}


def measured_step(parts: list[list[dict]]) -> float:
    """Seconds from the first instruction's start to the last one's end, over all ranks."""
    return max(row["end"] for rows in parts for row in rows) - min(row["start"] for rows in parts for row in rows)


def compare_with_simulation(parts: list[list[dict]], timeline: Timeline) -> str:
    """Measured step time and per-rank idle share beside the simulated (predicted) ones. The
    prediction is in the cost block's units: milliseconds when it came from `--profile`."""
    step = measured_step(parts)
    predicted = timeline.makespan
    lines = [f"measured step {step * 1e3:.2f} ms; predicted step {predicted:.4g} (simulated makespan, in the "
             f"cost block's units: ms when it came from --profile); measured / predicted = "
             f"{step * 1e3 / predicted if predicted else float('inf'):.3f}",
             f"{'rank':>4} {'busy ms':>9} {'idle share':>11} {'simulated idle share':>21}"]
    idle_total = 0.0
    for rank, rows in enumerate(parts):
        busy = sum(r["end"] - r["start"] for r in rows if r["kind"] in _COMPUTE)
        idle_total += step - busy
        sim = timeline.ranks[rank]
        lines.append(f"{rank:>4} {busy * 1e3:>9.2f} {(step - busy) / step:>11.1%} "
                     f"{sim.idle / timeline.makespan:>21.1%}")
    lines.append(f"bubble ratio: measured {idle_total / (step * len(parts)):.1%}, simulated "
                 f"{timeline.bubble_ratio:.1%}")
    return "\n".join(lines)
