"""How fast schedc compiles: parse + compile + verify + simulate, against PyTorch's own generator.

    python benchmarks/compile_speed.py            # the issue's sizes, 5 alternating rounds
    python benchmarks/compile_speed.py --quick    # smaller sizes, for CI's sanity run

Cases:
- DualPipeV on 32 ranks, 128 microbatches: schedc (parse, build the DAG, generate, lower the
  communication, verify, simulate) against PyTorch's generation and comm lowering of the same
  schedule (`get_schedule_ops("DualPipeV", 32, 128, with_comms=True)`), alternated in one run.
  Target: schedc / torch <= 0.5, although schedc also verifies and simulates.
- DualPipe on 64 ranks, 512 microbatches: schedc alone. Target: under 10 s and 2 GiB, measured
  in a fresh child process (peak resident memory).
Figures are medians; the ratio is what to compare across machines (this one is shared and noisy).
Each timed call starts after a full garbage collection (not timed), so neither side's collections
walk the objects the other one left.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import subprocess
import sys
import time
import warnings

import schedc
from schedc.compiler import compile_spec
from schedc.simulate import simulate

SOURCE = ("pipeline bench {{ ranks = {ranks} microbatches = {microbatches} schedule = {family} "
          "cost {{ F = 1 B = 2 W = 1 F&B = 3 }} }}")


def time_schedc(family: str, ranks: int, microbatches: int) -> dict:
    """Seconds per step of one full schedc run, and the number of instructions it produced."""
    steps = {}
    t0 = time.perf_counter()
    [spec] = schedc.parse(SOURCE.format(ranks=ranks, microbatches=microbatches, family=family), "bench.sched")
    t1 = time.perf_counter()
    compiled = compile_spec(spec)  # DAG, generation, fusion, lowering, verification
    t2 = time.perf_counter()
    timeline = simulate(compiled.spec, compiled.dag, compiled.plan)
    t3 = time.perf_counter()
    steps.update(parse=t1 - t0, compile_and_verify=t2 - t1, simulate=t3 - t2, total=t3 - t0)
    steps["instructions"] = sum(len(r) for r in compiled.plan.ranks)
    steps["makespan"] = timeline.makespan
    return steps


def time_torch(ranks: int, microbatches: int) -> float | None:
    try:
        from torch.distributed.pipelining._schedule_visualizer import get_schedule_ops
    except ImportError:
        return None
    t0 = time.perf_counter()
    get_schedule_ops("DualPipeV", ranks, microbatches, with_comms=True)
    return time.perf_counter() - t0


def compare_with_torch(ranks: int, microbatches: int, rounds: int, target: str = "target <= 0.5") -> None:
    warnings.filterwarnings("ignore")
    schedc.parse("pipeline warm { ranks = 2 microbatches = 4 }", "warm.sched")  # build the parser once
    ours, theirs, detail = [], [], []
    for _ in range(rounds):  # alternate, so both see the same machine load
        gc.collect()  # each side starts from a collected heap: neither pays for the other's garbage
        run = time_schedc("dualpipev", ranks, microbatches)
        ours.append(run["total"])
        detail.append(run)
        gc.collect()
        t = time_torch(ranks, microbatches)
        if t is not None:
            theirs.append(t)
    median = statistics.median(ours)
    print(f"DualPipeV {ranks} ranks x {microbatches} microbatches "
          f"({detail[0]['instructions']} instructions, simulated makespan {detail[0]['makespan']:g})")
    for step in ("parse", "compile_and_verify", "simulate"):
        print(f"  schedc {step:<19} {statistics.median(d[step] for d in detail):8.3f} s")
    print(f"  schedc total               {median:8.3f} s  (parse + compile + verify + simulate)")
    if not theirs:
        print("  torch not installed: no comparison")
        return
    print(f"  torch get_schedule_ops     {statistics.median(theirs):8.3f} s  (generation + comm lowering)")
    ratios = [a / b for a, b in zip(ours, theirs)]
    print(f"  ratio schedc / torch       {statistics.median(ratios):8.3f}  (median of {rounds} "
          f"alternating rounds; {target})")


def large_case_in_child(ranks: int, microbatches: int) -> None:
    code = ("import json, resource, sys; sys.path.insert(0, 'benchmarks'); import compile_speed as b; "
            f"r = b.time_schedc('dualpipe', {ranks}, {microbatches}); "
            "r['max_rss_mib'] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024; "
            "print(json.dumps(r))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    r = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"DualPipe {ranks} ranks x {microbatches} microbatches ({r['instructions']} instructions): "
          f"{r['total']:.2f} s, peak memory {r['max_rss_mib']:.0f} MiB (targets: < 10 s, < 2048 MiB)")
    print(f"  parse {r['parse']:.3f} s, compile+verify {r['compile_and_verify']:.2f} s, "
          f"simulate {r['simulate']:.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (a sanity run)")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    if args.quick:
        compare_with_torch(8, 32, 2, "the target applies at 32 x 128")
        large_case_in_child(16, 64)
        return
    compare_with_torch(32, 128, args.rounds)
    large_case_in_child(64, 512)


if __name__ == "__main__":
    main()
