"""Step time of schedc's torch runner against PyTorch's own pipeline schedule classes.

    python benchmarks/runtime_vs_torch.py [--steps 7] [--width 512]

Starts 4 processes (gloo, CPU). For 1f1b, interleaved, zbv and dualpipev, both runtimes run the
same model (an MLP, float32) on the same microbatches, alternating step by step; each step's
time is the slowest rank's (a barrier before each). Prints the medians and schedc / PyTorch
(target <= 1.0), and DualPipe's step time (PyTorch has no bidirectional DualPipe) against 1F1B.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import time

RANKS, MICROBATCHES, ROWS = 4, 8, 16
CASES = [("1f1b", "Schedule1F1B", 1), ("interleaved", "ScheduleInterleaved1F1B", 2),
         ("zbv", "ScheduleZBVZeroBubble", 2), ("dualpipev", "ScheduleDualPipeV", 2)]


def build_stages(num_stages, width):
    import torch
    torch.manual_seed(0)
    return [torch.nn.Sequential(torch.nn.Linear(width, width), torch.nn.ReLU(), torch.nn.Linear(width, width))
            for _ in range(num_stages)]


def loss_fn(output, target):
    return ((output - target) ** 2).sum()


def stage_ids(placement_v: bool, per_rank: int, rank: int) -> list[int]:
    if placement_v:
        return [rank, 2 * RANKS - 1 - rank]
    return [rank + k * RANKS for k in range(per_rank)]


def torch_schedule(cls_name, per_rank, rank, width):
    import torch
    from torch.distributed.pipelining import PipelineStage, schedules
    num_stages = RANKS * per_rank
    modules = build_stages(num_stages, width)
    ids = stage_ids(cls_name in ("ScheduleZBVZeroBubble", "ScheduleDualPipeV"), per_rank, rank)

    def shape(grad=False):
        return torch.zeros(ROWS, width).requires_grad_(grad)

    stages = [PipelineStage(modules[s], s, num_stages, torch.device("cpu"), input_args=shape(s > 0),
                            output_args=shape(), output_grads=shape(), input_grads=shape()) for s in ids]
    cls = getattr(schedules, cls_name)
    schedule = cls(stages[0] if per_rank == 1 else stages, MICROBATCHES, loss_fn=loss_fn, scale_grads=False)
    return schedule, ids, num_stages


def schedc_runner(family, rank, width):
    import schedc
    from schedc.backends.torch import PipelineRunner
    [spec] = schedc.parse(f"pipeline b {{ ranks = {RANKS} microbatches = {MICROBATCHES} schedule = {family} }}", "b")
    compiled = schedc.compile(spec)
    return PipelineRunner(compiled.spec, compiled.plan, rank, lambda n: build_stages(n, width), loss_fn)


def timed(fn) -> float:
    import torch
    import torch.distributed as dist
    dist.barrier()
    start = time.perf_counter()
    fn()
    elapsed = torch.tensor([time.perf_counter() - start], dtype=torch.float64)
    dist.all_reduce(elapsed, op=dist.ReduceOp.MAX)
    return elapsed.item()


def worker(steps: int, width: int) -> None:
    import torch
    import torch.distributed as dist
    rank = int(os.environ["RANK"])
    dist.init_process_group("gloo")
    torch.manual_seed(5)
    x, y = torch.randn(ROWS * MICROBATCHES, width), torch.randn(ROWS * MICROBATCHES, width)
    xs, ys = list(x.chunk(MICROBATCHES)), list(y.chunk(MICROBATCHES))
    results = {}
    for family, cls_name, per_rank in CASES:
        schedule, ids, num_stages = torch_schedule(cls_name, per_rank, rank, width)
        runner = schedc_runner(family, rank, width)
        args = (x,) if 0 in ids else ()
        target = y if num_stages - 1 in ids else None
        ours, theirs = [], []
        for step in range(steps + 1):  # the first round warms both up
            t_theirs = timed(lambda: schedule.step(*args, target=target, losses=[]))
            t_ours = timed(lambda: runner.step(xs, ys))
            if step:
                ours.append(t_ours)
                theirs.append(t_theirs)
        results[family] = (statistics.median(ours), statistics.median(theirs),
                           statistics.median(a / b for a, b in zip(ours, theirs)))
    dualpipe = schedc_runner("dualpipe", rank, width)
    dual = statistics.median(timed(lambda: dualpipe.step(xs, ys)) for _ in range(steps))
    if rank == 0:
        print(f"4 ranks (gloo, CPU), {MICROBATCHES} microbatches of {ROWS}x{width}, MLP stages, float32; "
              f"median of {steps} alternating steps")
        print(f"{'family':<12} {'schedc ms':>10} {'PyTorch ms':>11} {'ratio':>7}  (target <= 1.0)")
        for family, (a, b, ratio) in results.items():
            print(f"{family:<12} {a * 1e3:>10.2f} {b * 1e3:>11.2f} {ratio:>7.3f}")
        one_f_one_b = results["1f1b"][0]
        print(f"dualpipe (schedc only): {dual * 1e3:.2f} ms, {dual / one_f_one_b:.3f} x schedc's 1f1b "
              "(2 replicas per rank: twice the parameters, same work per microbatch)")
    dist.destroy_process_group()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=7)
    parser.add_argument("--width", type=int, default=512)
    args = parser.parse_args()
    if "RANK" in os.environ:
        worker(args.steps, args.width)
        return
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(RANKS),
               OMP_NUM_THREADS="1")
    procs = [subprocess.Popen([sys.executable, "-W", "ignore", __file__, "--steps", str(args.steps),
                               "--width", str(args.width)], env=dict(env, RANK=str(r))) for r in range(RANKS)]
    sys.exit(max(p.wait() for p in procs))


if __name__ == "__main__":
    main()
