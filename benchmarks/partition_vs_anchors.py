"""Stage partitioning: schedc's split (the schedule's simulated step) beside the splits Megatron-LM,
torchtitan and DeepSpeed would choose, and the min-max bottleneck DP, on the same layers.

    python benchmarks/partition_vs_anchors.py [--budget 2000]

Cases: the public one (an embedding of cost 3, 32 blocks of cost 1, a head of cost 5, 8 ranks,
16 microbatches) under several families; a DeepSeek-V3-like stack (3 dense blocks, 58 MoE blocks,
an MTP layer and a head) on 8 ranks; mixed GPU generations (speeds 2,2,2,2,1,1,1,1); and a
memory limit that parameters make binding. Each row: simulated makespan, slowest stage (F + B per
microbatch), largest per-rank memory (parameters + the activations the schedule holds), and
whether it fits the limit. Figures are in the layers' own time and memory units.
"""

from __future__ import annotations

import argparse
import time

from schedc.lang.layers import Devices, Layer, LayerModel
from schedc.partition.compare import build_report
from schedc.partition.problem import PartitionProblem, family_spec


def public_model() -> LayerModel:
    layers = [Layer("embed", 3, 6, 3, 1, 10, "E")]
    layers += [Layer(f"layers.{i}", 1, 2, 1, 1, 4) for i in range(32)]
    return LayerModel(tuple(layers + [Layer("head", 5, 10, 5, 0, 10, "L")]))


def deepseek_like() -> LayerModel:
    layers = [Layer("embed", 1, 2, 1, 1, 30, "E")]
    layers += [Layer(f"dense.{i}", 1, 2, 1, 1, 4) for i in range(3)]
    layers += [Layer(f"moe.{i}", 1.6, 3.2, 1.6, 1.2, 12) for i in range(58)]
    layers += [Layer("mtp", 2, 4, 2, 1.5, 14, "m"), Layer("head", 4, 8, 4, 0, 30, "L")]
    return LayerModel(tuple(layers))


CASES = [
    ("public, 1f1b", public_model, "1f1b", 8, 16, None, None),
    ("public, zb-h1", public_model, "zb-h1", 8, 16, None, None),
    ("public, dualpipe", public_model, "dualpipe", 8, 16, None, None),
    ("public, zbv", public_model, "zbv", 8, 16, None, None),
    ("deepseek-like, 1f1b", deepseek_like, "1f1b", 8, 32, None, None),
    ("public, speeds 2,2,2,2,1,1,1,1", public_model, "1f1b", 8, 16, (2, 2, 2, 2, 1, 1, 1, 1), None),
    ("deepseek-like, 1f1b, limit 150", deepseek_like, "1f1b", 8, 32, None, 150),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=int, default=2000)
    args = parser.parse_args()
    for title, build, family, ranks, microbatches, speeds, limit in CASES:
        devices = Devices(tuple(float(s) for s in speeds or (1,) * ranks), (limit,) * ranks)
        problem = PartitionProblem(build(), family_spec(family, ranks, microbatches), devices)
        start = time.perf_counter()
        report = build_report(problem, args.budget)
        seconds = time.perf_counter() - start
        choice = report.choice
        print(f"\n## {title}: {len(problem.model)} layers, {ranks} ranks, {microbatches} microbatches "
              f"({seconds:.2f} s, {choice.evaluated} splits simulated, "
              f"{'proven optimal' if choice.exact else 'budget reached'}; lower bound {choice.lower_bound:g})")
        print(f"{'split':<28} {'makespan':>9} {'vs ours':>8} {'slowest':>8} {'max memory':>11} {'fits':>5}")
        ours = choice.best.makespan
        for row in report.rows:
            r = row.result
            if r is None:
                print(f"{row.name:<28} {'-':>9}   {row.note}")
                continue
            print(f"{row.name:<28} {r.makespan:>9g} {r.makespan / ours - 1:>+8.1%} {r.bottleneck:>8g} "
                  f"{max(r.memory):>11g} {'yes' if r.fits else 'NO':>5}")


if __name__ == "__main__":
    main()
