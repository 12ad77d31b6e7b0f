"""`schedc run --profile`: time each stage's F, B, I, W and overlapped pair with the runner's own
compute (the backend's `compute.py`), so the cost block predicts what a run executes.

All stages are timed together, round-robin (`time_interleaved`): each round runs every stage's F,
B, I, W and pair once, so a slow period of the machine lands on every figure alike instead of on
the one stage being timed then. On a CPU computing on one thread (what torchrun gives each of several
ranks) the clock is the thread's CPU time (`op_clock`): a pause while the OS runs another process
is not the op's. After `warmup` untimed rounds come at least `repeats` timed ones,
more (up to `MAX_REPEATS_FACTOR` x repeats) while any figure's standard error is above
`TARGET_ERROR` of it. A figure is the mean of its fastest tenth of samples (`fastest_mean`: the
op's time when nothing slowed it; on a shared host whose speed drifts by tens of percent for
seconds at a time, the interquartile mean moved with the host: over six profiles of one model
taken back to back, a figure's largest over its smallest was up to 1.71 with the interquartile
mean and 1.19 with the fastest tenth's, on the same samples), with its spread (interquartile
range over the median). Only the op is timed: its inputs (the
forward before a backward, the I before a W) are made untimed before each sample. On CUDA the
device is synchronized before and after each timed op, so the figures are the GPU's times.

Figures per stage (milliseconds), on one microbatch from the model's `make_batch`:
- F: `stage_forward` (with the loss on the last stage);
- B: `full_backward`; I: `backward_input`; W: `backward_weight` after an untimed I. The first
  stage has no input gradient: its I is empty and its W is its whole backward, so its W is B;
- F&B: `run_pair` of a forward beside another microbatch's full backward on the same stage, run
  the way the runner would: the stage's overlap hook, else each way of `OVERLAP_WAYS` this device
  has (two streams: CUDA only), and the faster one is reported and recommended (or the forced
  `overlap` way).
The cost block is made from these figures in `costblock.py`.
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass, field
from typing import Callable, Hashable

import torch

from ..compute import (Pair, Root, backward_input, backward_weight, full_backward, overlap_hook, run_pair,
                      stage_forward)

TARGET_ERROR = 0.02  # a figure's relative standard error at which repeats stop
MAX_REPEATS_FACTOR = 4  # at most this many times `repeats` timed rounds


FASTEST_SHARE = 0.1  # a figure is the mean of this share of its samples, the fastest


@dataclass(frozen=True)
class Timing:
    """Milliseconds of one op: `ms`, the mean of the fastest tenth of `samples` timings, and
    `spread`, their interquartile range over their median (0 for an empty op, which has no
    samples)."""

    ms: float
    spread: float
    samples: int


def middle_mean(values: list[float]) -> float:
    """The interquartile mean: the mean of the middle half of `values` once sorted (the lowest and
    highest quarter, rounded down, are dropped; all of them when fewer than 4)."""
    ordered = sorted(values)
    cut = len(ordered) // 4
    return statistics.fmean(ordered[cut:len(ordered) - cut])


def fastest_mean(values: list[float]) -> float:
    """The mean of the fastest `FASTEST_SHARE` of `values` (at least one value): an op's time
    when nothing slowed it down. Every disturbance (another tenant on the host, a slower clock, a
    cold cache) only adds time, so the fastest samples are the ones that repeat."""
    ordered = sorted(values)
    return statistics.fmean(ordered[:max(1, int(len(ordered) * FASTEST_SHARE))])


def _summarize(times: list[float]) -> Timing:
    value = fastest_mean(times)
    q1, median, q3 = statistics.quantiles(times, n=4) if len(times) > 1 else (value, value, value)
    return Timing(value * 1e3, (q3 - q1) / median if median > 0 else 0.0, len(times))


def _relative_error(times: list[float]) -> float:
    """How settled the samples are: their interquartile mean's standard error over it, with sigma
    estimated from the interquartile range (robust to outliers); 1.253 sigma / sqrt(n) as for a
    median."""
    value = middle_mean(times)
    q1, _, q3 = statistics.quantiles(times, n=4)
    return 1.253 * ((q3 - q1) / 1.349) / math.sqrt(len(times)) / value if value > 0 else 0.0


Task = tuple[Callable[[], tuple], Callable]  # (setup giving the op's arguments, op)


def time_interleaved(tasks: dict[Hashable, Task], device: torch.device, warmup: int = 2, repeats: int = 10,
                     max_repeats: int | None = None) -> dict[Hashable, Timing]:
    """Time each task's `op(*setup())`, round-robin: every round runs every task once, in the
    order given. `warmup` untimed rounds, then at least `repeats` timed ones, more (up to
    `max_repeats`, default `MAX_REPEATS_FACTOR` x repeats) until every figure's relative error
    is within `TARGET_ERROR`. Each task gets the same number of samples."""
    max_repeats = max(repeats, max_repeats or MAX_REPEATS_FACTOR * repeats)
    clock = op_clock(device)
    times: dict[Hashable, list[float]] = {key: [] for key in tasks}
    for round_ in range(warmup + max_repeats):
        for key, (setup, op) in tasks.items():
            args = setup()
            _synchronize(device)
            start = clock()
            op(*args)
            _synchronize(device)
            if round_ >= warmup:
                times[key].append(clock() - start)
        timed = round_ + 1 - warmup
        if timed >= max(repeats, 4) and all(_relative_error(t) <= TARGET_ERROR for t in times.values()):
            break
    return {key: _summarize(t) for key, t in times.items()}


def op_clock(device: torch.device) -> Callable[[], float]:
    """The clock an op is timed with: on a CPU computing on one thread, the thread's own CPU time
    (`time.thread_time`: the op computes on the calling thread, autograd's CPU backward included,
    and the time the OS gives the core to another process is not counted, so a time slice landing
    on a sample cannot move it); else the wall clock (CUDA: synchronized around the op)."""
    if device.type == "cpu" and torch.get_num_threads() == 1:
        return time.thread_time
    return time.perf_counter


def time_op(setup, op, device: torch.device, warmup: int = 2, repeats: int = 10,
            max_repeats: int | None = None) -> Timing:
    """One op timed alone: `time_interleaved` with a single task."""
    return time_interleaved({0: (setup, op)}, device, warmup, repeats, max_repeats)[0]


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
    """Time every stage of `model` (a model file: build_stages, loss_fn, make_batch) on `device`,
    all stages interleaved (`time_interleaved`). `overlap`: force the way pairs without a hook
    run ("streams" or "sequential"); None measures each way this device has and picks the faster."""
    device = torch.device(device)
    stages, output_bytes = _prepare_stages(model, num_stages, dtype, device)
    ways = [overlap] if overlap else [w for w in ("streams", "sequential") if w != "streams" or device.type == "cuda"]
    side = torch.cuda.Stream(device) if "streams" in ways else None
    tasks = {(s, key): task for s, stage in enumerate(stages) for key, task in _tasks(stage, ways, side).items()}
    timings = time_interleaved(tasks, device, warmup, repeats)
    return [_stage_profile(s, {key: t for (at, key), t in timings.items() if at == s}, output_bytes[s])
            for s in range(num_stages)]


def _prepare_stages(model, num_stages: int, dtype, device) -> tuple[list[_Stage], list[int]]:
    """Each stage ready to time (its inputs are the previous stage's outputs on the model's
    batch), and the bytes of each stage's output (0 for the last: it sends nothing forward)."""
    modules = [m.to(device=device, dtype=dtype) for m in model.build_stages(num_stages)]
    inputs, targets = model.make_batch(2)
    xs = [inputs[j].to(device=device, dtype=dtype) for j in range(2)]
    target = targets[0].to(device=device, dtype=dtype)
    generator = torch.Generator().manual_seed(0)
    stages, output_bytes = [], []
    for s, module in enumerate(modules):
        last = s == num_stages - 1
        with torch.no_grad():
            outs = [module(x) for x in xs]
        grad = None if last else torch.randn(outs[0].shape, generator=generator, dtype=dtype).to(device)
        stages.append(_Stage(module, xs, model.loss_fn if last else None, target if last else None, s > 0, grad))
        output_bytes.append(0 if last else outs[0].numel() * outs[0].element_size())
        xs = [out.detach() for out in outs]
    return stages, output_bytes


def _tasks(stage: _Stage, ways: list[str], side) -> dict:
    """What to time on one stage: F, B, and (unless it is the first) I and W; the pair by the
    stage's hook ("F&B", "hook") or by each of `ways` (("F&B", way))."""
    tasks = {"F": (stage.forward_args, stage_forward), "B": (lambda: (stage.root(),), full_backward)}
    if stage.has_input:
        tasks["I"] = (lambda: (stage.module, stage.root()), backward_input)
        tasks["W"] = (lambda: (stage.module, backward_input(stage.module, stage.root())[1]), backward_weight)
    if overlap_hook(stage.module) is not None:
        tasks[("F&B", "hook")] = (lambda: (stage.pair(), "sequential"), run_pair)
    else:
        for way in ways:
            tasks[("F&B", way)] = (lambda way=way: (stage.pair(), way, side), run_pair)
    return tasks


def _stage_profile(s: int, timings: dict, output_bytes: int) -> StageProfile:
    """A stage's figures from its timings; the first stage's I is empty and its W is its B."""
    figures = {key: timings[key] for key in ("F", "B")}
    figures["I"] = timings.get("I", Timing(0.0, 0.0, 0))
    figures["W"] = timings.get("W", figures["B"])
    pairs = {key[1]: t for key, t in timings.items() if isinstance(key, tuple)}
    profile = StageProfile(s, figures, output_bytes=output_bytes)
    if "hook" in pairs:
        figures["F&B"] = pairs["hook"]
        return profile
    profile.pair_ways = pairs
    profile.chosen_way = min(pairs, key=lambda w: pairs[w].ms)
    figures["F&B"] = pairs[profile.chosen_way]
    return profile


def sanity_warnings(profiles: list[StageProfile]) -> list[str]:
    """What a user should doubt: F, I, W not positive, W not below B (the first stage's I is empty
    by design), F&B outside [max(F, B), F + B]."""
    warnings = []
    for p in profiles:
        f = {k: t.ms for k, t in p.figures.items()}
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


def format_profile_table(profiles: list[StageProfile], comm_ms: list[float], send_ms: list[float]) -> str:
    """The measured figures with their spread, the transfer time of each stage's output (comm) and
    what posting that send costs the sending rank (send), as `#` comment lines (the output stays
    a valid .sched fragment)."""
    keys = ("F", "B", "I", "W", "F&B")
    lines = ["# stage " + "".join(f"{k + ' ms':>16}" for k in keys) + f"{'comm ms':>10}{'send ms':>10}"
             "  pairs without a hook"]
    for p, comm, send in zip(profiles, comm_ms, send_ms):
        cells = "".join(f"{_cell(p.figures[k]):>16}" for k in keys)
        ways = ", ".join(f"{w} {t.ms:.4g}" for w, t in p.pair_ways.items()) or "the stage's hook"
        lines.append(f"# {p.stage:>5} {cells}{comm:>10.4g}{send:>10.4g}  {ways}")
    return "\n".join(lines)


def _cell(t: Timing) -> str:
    return f"{t.ms:.4g} ±{t.spread:.0%}" if t.samples else "0 (empty)"


def recommended_way(profiles: list[StageProfile]) -> str | None:
    """The way overlapped pairs without a hook should run: the one faster in total over the
    stages, or None when every stage has a hook."""
    totals: dict[str, float] = {}
    for p in profiles:
        for way, t in p.pair_ways.items():
            totals[way] = totals.get(way, 0.0) + t.ms
    return min(totals, key=totals.get) if totals else None
