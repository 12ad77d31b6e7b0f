"""What really ran: merge each rank's instruction timings into a Chrome trace, compare the
measured step with the simulated one, and profile a model's per-stage costs for the cost block."""

from __future__ import annotations

import json
import os
import statistics
import time
from pathlib import Path

import torch

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


def compare_with_simulation(parts: list[list[dict]], timeline: Timeline) -> str:
    """Measured step time and per-rank idle share beside the simulated ones."""
    step = max(row["end"] for rows in parts for row in rows) - min(row["start"] for rows in parts for row in rows)
    lines = [f"measured step {step * 1e3:.2f} ms; simulated makespan {timeline.makespan:g} cost units "
             f"(bubble ratio measured vs simulated below)",
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


def _median_ms(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def profile_stages(model, num_stages: int, dtype, repeats: int = 20) -> list[dict]:
    """Median milliseconds of F, B (full), W and F&B (run back to back here) per stage."""
    stages = [m.to(dtype) for m in model.build_stages(num_stages)]
    inputs, targets = model.make_batch(2)
    x = inputs[0].to(dtype)
    rows = []
    for s, module in enumerate(stages):
        last = s == num_stages - 1
        params = [p for p in module.parameters() if p.requires_grad]

        def run_forward(x=x, module=module, last=last):
            inp = x.detach().requires_grad_(s > 0)
            out = module(inp)
            return inp, (model.loss_fn(out, targets[0].to(dtype)) if last else out)

        def full_backward():
            _inp, out = run_forward()
            torch.autograd.backward(out, None if last else torch.ones_like(out))

        def weight_only():
            _inp, out = run_forward()
            torch.autograd.grad(out, params, None if last else torch.ones_like(out))

        f = _median_ms(run_forward, repeats)
        b = max(_median_ms(full_backward, repeats) - f, 0.0)
        w = min(max(_median_ms(weight_only, repeats) - f, 0.0), b)
        rows.append({"stage": s, "F": f, "B": b, "W": w, "F&B": f + b})
        x = module(x).detach()
    return rows


def format_cost_block(rows: list[dict]) -> str:
    """A `cost { }` block (milliseconds) to paste into the .sched file."""
    def items(r):
        return "  ".join(f"{k} = {r[k]:.4g}" for k in ("F", "B", "W", "F&B"))
    base = rows[0]
    lines = ["cost {   # measured by schedc run --profile, in milliseconds", f"  {items(base)}"]
    for r in rows[1:]:
        if any(abs(r[k] - base[k]) > 0.1 * max(base[k], 1e-9) for k in ("F", "B", "W")):
            lines.append(f"  stage {r['stage']} {{ {items(r)} }}")
    lines.append("}")
    return "\n".join(lines)
