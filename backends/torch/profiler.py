"""`schedc run --profile`: time each stage's F, B, I, W and overlapped pair with the runner's own
compute (`compute.py`), so the cost block predicts what a run executes.

Each figure is the median of repeated runs after a warm-up, with its spread (interquartile range
over the median); repeats go on, up to a maximum, until the median's standard error is within
`TARGET_ERROR` of it. Only the op is timed: its inputs (the forward before a backward, the I before
a W) are made untimed before each repeat. On CUDA the device is synchronized before and after each
timed op, so the figures are the GPU's times, not the launch times.

Figures per stage (milliseconds), on one microbatch from the model's `make_batch`:
- F: `stage_forward` (with the loss on the last stage);
- B: `full_backward`; I: `backward_input`; W: `backward_weight` after an untimed I. The first
  stage has no input gradient: its I is empty and its W is its whole backward, so its W is B;
- F&B: `run_pair` of a forward beside another microbatch's full backward on the same stage, run
  the way the runner would: the stage's overlap hook, else each way of `OVERLAP_WAYS` this device
  has (two streams: CUDA only), and the faster one is reported and recommended (or the forced
  `overlap` way).
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass, field

import torch

from .compute import (Pair, Root, backward_input, backward_weight, full_backward, overlap_hook, run_pair,
                      stage_forward)

TARGET_ERROR = 0.02  # the median's relative standard error at which repeats stop


@dataclass(frozen=True)
class Timing:
    """Milliseconds of one op: the median of `samples`, and the spread (IQR / median)."""

    median: float
    spread: float
    samples: int


def _summarize(times: list[float]) -> Timing:
    median = statistics.median(times)
    q1, _, q3 = statistics.quantiles(times, n=4) if len(times) > 1 else (median, median, median)
    return Timing(median * 1e3, (q3 - q1) / median if median > 0 else 0.0, len(times))


def _median_error(times: list[float]) -> float:
    """The median's standard error over the median (1.253 sigma / sqrt(n), sigma from the IQR)."""
    median = statistics.median(times)
    q1, _, q3 = statistics.quantiles(times, n=4)
    return 1.253 * ((q3 - q1) / 1.349) / math.sqrt(len(times)) / median if median > 0 else 0.0


def time_op(setup, op, device: torch.device, warmup: int = 2, repeats: int = 10,
            max_repeats: int = 40) -> Timing:
    """Time `op(*setup())`: `warmup` untimed runs, then at least `repeats` timed ones, more (up to
    `max_repeats`) while the median is not yet stable (`TARGET_ERROR`)."""
    times: list[float] = []
    for i in range(warmup + max_repeats):
        args = setup()
        _synchronize(device)
        start = time.perf_counter()
        op(*args)
        _synchronize(device)
        if i >= warmup:
            times.append(time.perf_counter() - start)
        if len(times) >= max(repeats, 4) and _median_error(times) <= TARGET_ERROR:
            break
    return _summarize(times)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class StageProfile:
    """One stage's timings (F, B, I, W, F&B), the pair's timing for each way tried, the way the
    runner should use for pairs without a hook, and the bytes of the stage's output."""

    stage: int
    figures: dict[str, Timing]
    pair_ways: dict[str, Timing] = field(default_factory=dict)
    chosen_way: str = "hook"
    output_bytes: int = 0


class _Stage:
    """What timing one stage needs: its module, two microbatches' inputs, the output's gradient."""

    def __init__(self, module, xs, loss_fn, target, has_input: bool, grad):
        self.module, self.xs, self.loss_fn, self.target = module, xs, loss_fn, target
        self.has_input, self.grad = has_input, grad

    def input(self, j: int = 0) -> torch.Tensor:
        return self.xs[j].detach().requires_grad_(self.has_input)

    def root(self, j: int = 0) -> Root:
        x = self.input(j)
        out, loss = stage_forward(self.module, x, self.loss_fn, self.target)
        self.module.zero_grad(set_to_none=False)  # gradients accumulate as in a run, from zero
        return Root(x, loss if loss is not None else out, None if loss is not None else self.grad,
                    self.has_input)

    def forward_args(self):
        return (self.module, self.input(), self.loss_fn, self.target)

    def pair(self, full: bool = True) -> Pair:
        return Pair(self.module, self.input(0), self.loss_fn, self.target, self.module, self.root(1), full)


def profile_stages(model, num_stages: int, dtype: torch.dtype, device: torch.device | str = "cpu",
                   overlap: str | None = None, warmup: int = 2, repeats: int = 10) -> list[StageProfile]:
    """Time every stage of `model` (a model file: build_stages, loss_fn, make_batch) on `device`.
    `overlap`: force the way pairs without a hook run ("streams" or "sequential"); None measures
    each way this device has and picks the faster."""
    device = torch.device(device)
    modules = [m.to(device=device, dtype=dtype) for m in model.build_stages(num_stages)]
    inputs, targets = model.make_batch(2)
    xs = [inputs[j].to(device=device, dtype=dtype) for j in range(2)]
    target = targets[0].to(device=device, dtype=dtype)
    generator = torch.Generator().manual_seed(0)
    profiles = []
    for s, module in enumerate(modules):
        last = s == num_stages - 1
        with torch.no_grad():
            outs = [module(x) for x in xs]
        grad = None if last else torch.randn(outs[0].shape, generator=generator, dtype=dtype).to(device)
        stage = _Stage(module, xs, model.loss_fn if last else None, target if last else None, s > 0, grad)
        profiles.append(_profile_stage(s, stage, device, overlap, warmup, repeats))
        profiles[-1].output_bytes = 0 if last else outs[0].numel() * outs[0].element_size()
        xs = [out.detach() for out in outs]
    return profiles


def _profile_stage(s: int, stage: _Stage, device, overlap, warmup, repeats) -> StageProfile:
    def timed(setup, op):
        return time_op(setup, op, device, warmup, repeats)

    figures = {"F": timed(stage.forward_args, stage_forward),
               "B": timed(lambda: (stage.root(),), full_backward)}
    if stage.has_input:
        figures["I"] = timed(lambda: (stage.module, stage.root()), backward_input)
        figures["W"] = timed(lambda: (stage.module, backward_input(stage.module, stage.root())[1]),
                             backward_weight)
    else:  # the first stage: I is empty, W is the whole backward
        figures["I"] = Timing(0.0, 0.0, 0)
        figures["W"] = figures["B"]
    profile = StageProfile(s, figures)
    if overlap_hook(stage.module) is not None:
        figures["F&B"] = timed(lambda: (stage.pair(), "sequential"), run_pair)
        return profile
    ways = [overlap] if overlap else [w for w in ("streams", "sequential") if w != "streams" or device.type == "cuda"]
    side = torch.cuda.Stream(device) if "streams" in ways else None
    for way in ways:
        profile.pair_ways[way] = timed(lambda: (stage.pair(), way, side), run_pair)
    profile.chosen_way = min(profile.pair_ways, key=lambda w: profile.pair_ways[w].median)
    figures["F&B"] = profile.pair_ways[profile.chosen_way]
    return profile


def sanity_warnings(profiles: list[StageProfile]) -> list[str]:
    """What a user should doubt: F, I, W not positive, W not below B (the first stage's I is empty
    by design), F&B outside [max(F, B), F + B]."""
    warnings = []
    for p in profiles:
        f = {k: t.median for k, t in p.figures.items()}
        checks = [("F", f["F"] > 0, "F is not positive"), ("W", f["W"] > 0, "W is not positive")]
        if p.stage > 0:
            checks += [("I", f["I"] > 0, "I is not positive"),
                       ("W", f["W"] < f["B"], f"W = {f['W']:.4g} is not below B = {f['B']:.4g}: noise, or "
                        "the split costs more than it saves; the cost block caps W at B")]
        low, high = max(f["F"], f["B"]), f["F"] + f["B"]
        if not low <= f["F&B"] <= high:
            checks.append(("F&B", False, f"F&B = {f['F&B']:.4g} is outside [max(F, B), F + B] = "
                           f"[{low:.4g}, {high:.4g}]; the cost block clamps it"))
        warnings += [f"stage {p.stage}: {message}" for _key, ok, message in checks if not ok]
    return warnings


def cost_rows(profiles: list[StageProfile], comm_ms: list[float]) -> list[dict]:
    """Each stage's cost-block figures, made consistent with the language: W <= B and
    max(F, B) <= F&B <= F + B."""
    rows = []
    for p, comm in zip(profiles, comm_ms):
        f = {k: t.median for k, t in p.figures.items()}
        b = f["B"]
        w = min(f["W"], b)
        fb = min(max(f["F&B"], f["F"], b), f["F"] + b)
        rows.append({"stage": p.stage, "F": f["F"], "B": b, "W": w, "F&B": fb, "comm": comm})
    return rows


_BLOCK_KEYS = ("F", "B", "W", "F&B", "comm")


def format_cost_block(rows: list[dict], indent: str = "") -> str:
    """A `cost { }` block in milliseconds: stage 0's figures as the defaults, every other stage
    that differs by more than 2% in any figure as an override (a profile is per stage)."""
    def items(r):
        return "  ".join(f"{k} = {_number(r[k])}" for k in _BLOCK_KEYS)
    rows = [_rounded(r) for r in rows]
    base = rows[0]
    lines = [f"{indent}cost {{   # measured by schedc run --profile, in milliseconds", f"{indent}  {items(base)}"]
    for r in rows[1:]:
        if any(abs(r[k] - base[k]) > 0.02 * max(base[k], 1e-9) for k in _BLOCK_KEYS):
            lines.append(f"{indent}  stage {r['stage']} {{ {items(r)} }}")
    lines.append(f"{indent}}}")
    return "\n".join(lines)


def _rounded(row: dict) -> dict:
    """`row` as the block prints it (4 significant digits), with W <= B and max(F, B) <= F&B <=
    F + B still true of the printed numbers (rounding each figure alone can break them)."""
    r = {k: float(f"{row[k]:.4g}") for k in _BLOCK_KEYS}
    r["W"] = min(r["W"], r["B"])
    longer = max(r["F"], r["B"])
    pair = min(max(row["F&B"], longer), r["F"] + r["B"])
    r["F&B"] = min(max(_round_down(pair), longer), r["F"] + r["B"])  # rounding up could pass F + B
    return {**row, **r}


def _number(value: float) -> str:
    """4 significant digits, or every digit when those would change the value (an F&B equal to the
    printed F + B must read back as exactly that sum)."""
    short = f"{value:.4g}"
    return short if float(short) == value else repr(value)


def _round_down(value: float, digits: int = 4) -> float:
    """`value` cut (not rounded) to `digits` significant digits."""
    if value <= 0:
        return value
    scale = 10 ** (digits - 1 - math.floor(math.log10(value)))
    return math.floor(value * scale) / scale


def format_profile_table(profiles: list[StageProfile], comm_ms: list[float]) -> str:
    """The measured figures with their spread, as `#` comment lines (the output stays a valid
    .sched fragment)."""
    keys = ("F", "B", "I", "W", "F&B")
    lines = ["# stage " + "".join(f"{k + ' ms':>16}" for k in keys) + f"{'comm ms':>10}  pairs without a hook"]
    for p, comm in zip(profiles, comm_ms):
        cells = "".join(f"{_cell(p.figures[k]):>16}" for k in keys)
        ways = ", ".join(f"{w} {t.median:.4g}" for w, t in p.pair_ways.items()) or "the stage's hook"
        lines.append(f"# {p.stage:>5} {cells}{comm:>10.4g}  {ways}")
    return "\n".join(lines)


def _cell(t: Timing) -> str:
    return f"{t.median:.4g} ±{t.spread:.0%}" if t.samples else "0 (empty)"


def recommended_way(profiles: list[StageProfile]) -> str | None:
    """The way overlapped pairs without a hook should run: the one faster in total over the
    stages, or None when every stage has a hook."""
    totals: dict[str, float] = {}
    for p in profiles:
        for way, t in p.pair_ways.items():
            totals[way] = totals.get(way, 0.0) + t.median
    return min(totals, key=totals.get) if totals else None
