"""Calibrate a profile with a short run of the plan itself (`schedc run --profile --calibrate N`).

Why: the profiler (`stage_times.py`) times each op in isolation, on one warm microbatch, beside
stand-in processes. Inside a run the same op reads activations its forward left long before,
shares the cores with the other ranks' real work and with gloo's threads, and its rank holds
every microbatch in flight. On the 2-core machine this was built on, the isolated figures were
10-30% away from the same ops' times inside a run, either way, while a simulation fed each op's
time *from a run* predicted that run's step within 12% (docs/backend.md).

So the calibration runs the plan (with the profiled block) for a few steps with `--trace`, and
takes each figure from the trace, over the steps after the first (a warm-up):
- F, B, I, W of a stage that the run has at least `MIN_SAMPLES` instructions of: the
  interquartile mean of all their durations (`_measured`: an instance the OS paused for a time
  slice cannot move it); B, when the plan splits every backward, is I + W.
- Any other figure (W in 1f1b, which runs none; a W that DualPipeV runs once a step): the
  profiled figure scaled by how the run moved the stage's ops of the same side (forward: F;
  backward: B, I, W, pooled, each weighted by its instances); else by all the stage's ops, else
  by the median stage's.
- F&B: each overlapped instruction's gain (its halves' calibrated costs minus its duration), the
  median over the pairs a stage takes part in, kept within [0, min(F, B)] (the language's
  bounds); a stage in no pair keeps its profiled gain, scaled.
- Sends: each stage's SEND_F / SEND_B slices (`run_sends`, interquartile means), charged to the
  op that makes them as the probe's figures are (`costblock.charge_sends`); a stage that sent
  nothing in the run keeps the probe's figure.
- The run's step (`RunDurations.typical_step`), to which `fit.py` fits the block's comm: the
  time the ops' typical durations leave out (pauses, waits for a core) lands there.
Pure functions of a trace (a Chrome trace's dict as `measure.merge_trace` writes it).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from ....ir import OpKind, parse_instr_token
from ..measure import counted_steps
from .stage_times import middle_mean

_KINDS = ("F", "B", "I", "W", "SEND_F", "SEND_B")
_BACKWARD = ("B", "I", "W")
MIN_SAMPLES = 8  # a figure measured fewer times in the run is the profiled one scaled (too noisy alone)


@dataclass
class RunDurations:
    """Milliseconds of each instruction of the counted steps of a traced run: `ops` per (kind,
    stage) for F, B, I, W, SEND_F, SEND_B, per step; `pairs` one (forward stage, backward kind,
    backward stage, ms) per overlapped instruction; `steps` how many steps they come from;
    `step_ms` each counted step's span (first start to last end over every rank's compute lane)."""

    ops: dict[tuple[str, int], dict[int, list[float]]] = field(default_factory=dict)
    pairs: list[tuple[int, str, int, float]] = field(default_factory=list)
    steps: int = 0
    step_ms: list[float] = field(default_factory=list)

    def typical_step(self) -> float | None:
        """The run's measured step (ms): the median of `step_ms`, as `--trace` prints it."""
        return statistics.median(self.step_ms) if self.step_ms else None


def run_durations(trace: dict) -> RunDurations:
    """The instruction durations of `trace` over `measure.counted_steps` (all steps but the first,
    or the only one)."""
    events = [e for e in trace["traceEvents"] if e.get("ph") == "X"]
    if not events:
        return RunDurations()
    counted = set(counted_steps(1 + max(e["args"]["step"] for e in events)))
    found = RunDurations(steps=len(counted))
    spans: dict[int, list[float]] = {}
    for event in events:
        if event.get("tid", 0) == 0 and event["args"]["step"] in counted:
            span = spans.setdefault(event["args"]["step"], [event["ts"], event["ts"] + event["dur"]])
            span[0], span[1] = min(span[0], event["ts"]), max(span[1], event["ts"] + event["dur"])
    found.step_ms = [(end - start) / 1e3 for _step, (start, end) in sorted(spans.items())]
    for event in events:
        if event["args"]["step"] not in counted:
            continue
        ms = event["dur"] / 1e3
        if event["cat"] == OpKind.OVERLAP.value:
            forward, backward = parse_instr_token(event["name"]).parts
            found.pairs.append((forward.stage, backward.kind.value, backward.stage, ms))
        elif event["cat"] in _KINDS:
            per_step = found.ops.setdefault((event["cat"], parse_instr_token(event["name"]).stage), {})
            per_step.setdefault(event["args"]["step"], []).append(ms)
    return found


def _count(run: RunDurations, kind: str, stage: int) -> int:
    return sum(len(values) for values in run.ops.get((kind, stage), {}).values())


def _measured(run: RunDurations, kind: str, stage: int) -> float | None:
    """The interquartile mean of every duration of `kind` on `stage` over the counted steps, or
    None. (The mean of each step, then the median over steps, let one slow instance move a
    figure: with more ranks than cores an op the OS sets aside for a time slice lasts 5-10 times
    its usual time. The time such pauses add to the step is in the step the block's comm is
    fitted to, `fit.py`.)"""
    values = [v for per_step in run.ops.get((kind, stage), {}).values() for v in per_step]
    return middle_mean(values) if values else None


def _moved(run: RunDurations, stage: int, kinds: tuple[str, ...], profiled: dict) -> float | None:
    """How the run moved `stage`'s ops of `kinds` against their `profiled` figures: the sum over
    the kinds of (instances x `_measured`) over the sum of (instances x profiled figure); None
    when the run has none of them."""
    ran = expected = 0.0
    for kind in kinds:
        count = _count(run, kind, stage)
        if count:
            ran += count * _measured(run, kind, stage)
            expected += count * profiled[kind]
    return ran / expected if expected > 0 else None


def calibrated_rows(rows: list[dict], run: RunDurations) -> list[dict]:
    """The profile's cost `rows` (`costblock.cost_rows` without sends: F, B, W, F&B, comm per
    stage) with each figure the run measured at least `MIN_SAMPLES` times taken from `run`, the
    others scaled (module docstring); each row also lists the figures it `measured`. The result
    keeps W <= B and max(F, B) <= F&B <= F + B. Sends are charged apart (`run_sends`,
    `costblock.charge_sends`)."""
    profiled = [{"F": r["F"], "B": r["B"], "W": r["W"], "I": r["B"] - r["W"]} for r in rows]
    stage_moved = [_moved(run, r["stage"], ("F", "B", "I", "W"), p) for r, p in zip(rows, profiled)]
    everything = statistics.median([m for m in stage_moved if m is not None] or [1.0])
    out = []
    for row, figures, whole in zip(rows, profiled, stage_moved):
        s = row["stage"]
        got = {k: _measured(run, k, s) if _count(run, k, s) >= MIN_SAMPLES else None for k in ("F", "B", "I", "W")}
        if got["B"] is None and got["I"] is not None and got["W"] is not None:
            got["B"] = got["I"] + got["W"]
        whole = whole or everything
        forward = _moved(run, s, ("F",), figures) or whole
        backward = _moved(run, s, _BACKWARD, figures) or whole
        f = got["F"] if got["F"] is not None else figures["F"] * forward
        b = got["B"] if got["B"] is not None else figures["B"] * backward
        w = min(got["W"] if got["W"] is not None else figures["W"] * backward, b)
        out.append({"stage": s, "F": f, "B": b, "W": w, "gain": (row["F"] + row["B"] - row["F&B"]) * whole,
                    "comm": row["comm"], "measured": sorted(k for k in ("F", "B", "I", "W") if got[k] is not None)})
    _pair_gains(out, run)
    for r in out:
        r["F&B"] = r["F"] + r["B"] - min(max(r.pop("gain"), 0.0), min(r["F"], r["B"]))
    return out


def run_sends(run: RunDurations, probe_send: list[float]) -> tuple[list[float], list[float]]:
    """What posting each stage's forward and backward send costs its rank (for
    `costblock.charge_sends`): the run's SEND_F / SEND_B slices of that stage (as compute figures
    are taken), else the probe's `probe_send` (a stage's backward sends a gradient the size of the
    previous stage's output)."""
    probe_backward = [0.0] + list(probe_send[:-1])
    forward = [_measured(run, "SEND_F", s) for s in range(len(probe_send))]
    backward = [_measured(run, "SEND_B", s) for s in range(len(probe_send))]
    return ([p if m is None else m for m, p in zip(forward, probe_send)],
            [p if m is None else m for m, p in zip(backward, probe_backward)])


def _pair_gains(rows: list[dict], run: RunDurations) -> None:
    """Set each stage's "gain" to the median gain of the overlapped instructions it is a half of
    (the sum of the halves' calibrated costs minus the pair's duration)."""
    gains: dict[int, list[float]] = {}
    for forward, kind, backward, ms in run.pairs:
        b = rows[backward]
        half = {"B": b["B"], "I": b["B"] - b["W"], "W": b["W"]}[kind]
        gain = rows[forward]["F"] + half - ms
        for s in {forward, backward}:
            gains.setdefault(s, []).append(gain)
    for s, values in gains.items():
        rows[s]["gain"] = statistics.median(values)
        rows[s]["measured"] = sorted(set(rows[s]["measured"]) | {"F&B"})


def format_calibration(profiled: list[dict], calibrated: list[dict], steps: int) -> str:
    """Each stage's figures as profiled and as the run measured them (`#` comment lines), with
    the ratio; a figure not taken from the run is marked `~` (scaled)."""
    keys = ("F", "B", "W", "F&B")
    lines = [f"# calibrated by a run of the plan ({steps} counted step(s)): each figure as profiled -> as run "
             f"(ratio); ~ = run fewer than {MIN_SAMPLES} times by this plan, the profiled figure scaled as the stage's "
             "measured ops moved",
             "# stage" + "".join(f"  {k + ' ms':>26}" for k in keys)]
    for p, c in zip(profiled, calibrated):
        cells = []
        for k in keys:
            mark = "" if k in c["measured"] or (k == "B" and {"I", "W"} <= set(c["measured"])) else "~"
            ratio = c[k] / p[k] if p[k] else float("nan")
            cells.append(f"{p[k]:.4g} -> {mark}{c[k]:.4g} ({ratio:.2f})")
        lines.append(f"# {p['stage']:>5}" + "".join(f"  {cell:>26}" for cell in cells))  # never run together
    return "\n".join(lines)
