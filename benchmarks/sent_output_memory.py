"""What giving sent stage outputs back saves: peak memory of a step, freed against kept.

    python benchmarks/sent_output_memory.py [--microbatches 16] [--rows 256] [--width 1024]

For each family, runs 2 ranks (gloo, CPU) twice: as `schedc run` does by default, and with
`free_sent_outputs=False` (`--keep-sent-outputs`). The stages are Linear-ReLU-Linear: the last
Linear does not need its output for the backward, so a sent output can go once the peer has it.
Prints rank 0's peak resident memory growth during its first step (Linux: the peak is reset to the
current resident set before the step and read after it; glibc's mmap threshold fixed so freed
tensors leave the resident set) and freed / kept.
On gloo a send never reports completion before it is waited for, so a sent tensor goes when the
plan proves the peer has it (a later message from the peer); with NCCL it goes when the transfer
completes.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys


FAMILIES = ("gpipe", "1f1b", "interleaved", "zbv", "dualpipev")


def status_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(field + ":"))


def reset_peak() -> int:
    """Reset the peak resident set to the current one (Linux: clear_refs 5); returns it in KiB."""
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")
    return status_kib("VmRSS")


def worker(family: str, free: bool, microbatches: int, rows: int, width: int) -> None:
    import torch
    import torch.distributed as dist

    import schedc
    from schedc.backends.torch import PipelineRunner
    rank = int(os.environ["RANK"])
    dist.init_process_group("gloo")
    [spec] = schedc.parse(f"pipeline m {{ ranks = 2 microbatches = {microbatches} schedule = {family} }}", "m")
    compiled = schedc.compile(spec)

    def build(n):
        torch.manual_seed(0)
        return [torch.nn.Sequential(torch.nn.Linear(width, width), torch.nn.ReLU(), torch.nn.Linear(width, width))
                for _ in range(n)]

    runner = PipelineRunner(compiled.spec, compiled.plan, rank, build,
                            lambda out, y: ((out - y) ** 2).sum(), free_sent_outputs=free)
    xs = [torch.randn(rows, width) for _ in range(microbatches)]
    for module in runner.modules.values():  # load the kernels outside the measured step
        module(xs[0]).sum().backward()
        module.zero_grad(set_to_none=True)
    dist.barrier()
    before = reset_peak()
    runner.step(xs, xs)
    growth = status_kib("VmHWM") - before
    if rank == 0:
        print(growth)  # KiB
    dist.destroy_process_group()


def launch(family: str, free: bool, args) -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE="2", OMP_NUM_THREADS="1",
               MALLOC_MMAP_THRESHOLD_="65536")
    command = [sys.executable, "-W", "ignore", __file__, "--family", family, "--free" if free else "--keep",
               "--microbatches", str(args.microbatches), "--rows", str(args.rows), "--width", str(args.width)]
    procs = [subprocess.Popen(command, env=dict(env, RANK=str(r)), stdout=subprocess.PIPE, text=True)
             for r in range(2)]
    outputs = [p.communicate()[0] for p in procs]
    if any(p.returncode for p in procs):
        sys.exit("a rank failed")
    return int(outputs[0].split()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--microbatches", type=int, default=16)
    parser.add_argument("--rows", type=int, default=256)
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--family", help=argparse.SUPPRESS)
    parser.add_argument("--free", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--keep", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if "RANK" in os.environ:
        worker(args.family, args.free, args.microbatches, args.rows, args.width)
        return
    tensor_mib = args.rows * args.width * 4 / 2**20
    print(f"2 ranks (gloo, CPU), {args.microbatches} microbatches of {args.rows}x{args.width} float32 "
          f"({tensor_mib:.1f} MiB per activation), Linear-ReLU-Linear stages; rank 0's peak memory "
          "growth during a step")
    print(f"{'family':<12} {'kept MiB':>9} {'freed MiB':>10} {'freed/kept':>11}")
    for family in FAMILIES:
        kept, freed = launch(family, False, args), launch(family, True, args)
        print(f"{family:<12} {kept / 1024:>9.1f} {freed / 1024:>10.1f} {freed / kept:>11.2f}")


if __name__ == "__main__":
    main()
