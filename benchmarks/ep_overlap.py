"""Expert parallelism with DualPipe's overlap, measured: `schedc run --ep 2 --compare-overlap` on
examples/models/moe.py, the overlapped pairs (chunk parts interleaved) against the same steps run
one chunk after the other, in one run; then DualPipeV against 1F1B on the same model.

    python benchmarks/ep_overlap.py [--repeats 3] [--steps 4] [--quick]

Prints, per model size, the median over repeats of: the step with overlapped pairs and with
sequential pairs, the exposed communication (time the compute lane waited on all-to-alls) of
each, the all-to-all's share of the sequential step, and hidden = 1 - exposed(overlapped) /
exposed(sequential). Target (issue 21): exposed(overlapped) <= 0.5 x exposed(sequential) on CPU
when the all-to-all is at least a third of the step. Anchors (GPU, published): torchtitan's
DualPipeV EP overlap hides about 86% with balanced routing, Megatron's combined 1F1B about 93%.

The pipeline is one rank holding two stages (DualPipeV's V on one rank: nearly every F and B in an
overlapped pair) with EP 2: two processes on a 2-core machine. More processes than cores turn
waiting on a peer into waiting for the scheduler, which no overlap can hide.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MOE = ROOT / "examples" / "models" / "moe.py"
SIZES = {  # name -> environment for the model file (balanced routing: MOE_SKEW = 0)
    "small": {"MOE_WIDTH": "64", "MOE_HIDDEN": "64", "MOE_SEQ": "32", "MOE_SKEW": "0"},
    "wide": {"MOE_WIDTH": "256", "MOE_HIDDEN": "64", "MOE_SEQ": "64", "MOE_SKEW": "0", "MOE_SHARED": "0"},
}
LINE = re.compile(r"(?P<way>\w+) pairs: step (?P<step>[\d.]+) ms, exposed communication (?P<exposed>[\d.]+) ms")
MEASURED = re.compile(r"measured: step (?P<step>[\d.]+) ms, exposed communication (?P<exposed>[\d.]+) ms")


def pipeline(folder: Path, family: str, ranks: int, microbatches: int) -> Path:
    path = folder / f"{family}_{ranks}x{microbatches}.sched"
    path.write_text(f"pipeline p {{ ranks = {ranks} microbatches = {microbatches} schedule = {family} "
                    "cost { F = 1 B = 2 W = 1 } }\n")
    return path


def run(path: Path, env: dict, steps: int, *extra: str) -> str:
    command = [sys.executable, "-W", "ignore", "-m", "schedc", "run", str(path), "--model", str(MOE), "--ep", "2",
               "--steps", str(steps), "--dtype", "float32", *extra]
    result = subprocess.run(command, capture_output=True, text=True, env={**os.environ, **env}, timeout=600)
    if result.returncode:
        raise SystemExit(f"failed: {' '.join(command)}\n{result.stderr[-2000:]}")
    return result.stdout


def overlap_rows(folder: Path, repeats: int, steps: int, sizes: dict) -> None:
    print("overlapped pairs (chunks) against sequential pairs, dualpipev on 1 rank x EP 2, "
          f"median of {repeats} runs (ms)")
    print(f"{'size':<7} {'step chunks':>12} {'step seq':>9} {'exposed chunks':>15} {'exposed seq':>12} "
          f"{'a2a share':>10} {'exposed ratio':>14} {'hidden':>7}  (target ratio <= 0.5; GPU anchors hide 86-93%)")
    path = pipeline(folder, "dualpipev", 1, 16)
    for name, env in sizes.items():
        figures = {"chunks": [], "sequential": []}
        for _ in range(repeats):
            for match in LINE.finditer(run(path, env, steps, "--compare-overlap")):
                figures[match["way"]].append((float(match["step"]), float(match["exposed"])))
        chunks = [statistics.median(f[i] for f in figures["chunks"]) for i in (0, 1)]
        seq = [statistics.median(f[i] for f in figures["sequential"]) for i in (0, 1)]
        ratio = chunks[1] / seq[1] if seq[1] else float("nan")
        print(f"{name:<7} {chunks[0]:>12.1f} {seq[0]:>9.1f} {chunks[1]:>15.1f} {seq[1]:>12.1f} "
              f"{seq[1] / seq[0]:>10.0%} {ratio:>14.2f} {1 - ratio:>7.0%}")


def family_rows(folder: Path, repeats: int, steps: int, env: dict) -> None:
    print(f"\nDualPipeV against 1F1B on the same model, ranks 2 x EP 2 (4 processes), median of {repeats} runs")
    steps_of = {}
    for family in ("1f1b", "dualpipev"):
        path = pipeline(folder, family, 2, 8)
        times = [float(MEASURED.search(run(path, env, steps))["step"]) for _ in range(repeats)]
        steps_of[family] = statistics.median(times)
        print(f"  {family:<10} step {steps_of[family]:.1f} ms")
    print(f"  dualpipev / 1f1b = {steps_of['dualpipev'] / steps_of['1f1b']:.2f}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--quick", action="store_true", help="one run of the small size (a sanity run)")
    args = parser.parse_args(argv)
    repeats, sizes = (1, {"small": SIZES["small"]}) if args.quick else (args.repeats, SIZES)
    with tempfile.TemporaryDirectory() as folder:
        overlap_rows(Path(folder), repeats, args.steps, sizes)
        family_rows(Path(folder), repeats, args.steps, SIZES["small"])


if __name__ == "__main__":
    main()
