"""The overlap model (schedc.overlap): derived F, B, F&B for a few chunks, the exact search's speed,
and the issue's check against a measured pair.

    python benchmarks/overlap_model.py            # everything below (about a minute)
    python benchmarks/overlap_model.py --quick    # the table and the check, a few seconds

1. Chunks (per stage, 4 layers): DeepSeek-V3-like with 1:1 compute:communication (the parts of
   issue 20, comm_share 0.15, and the same at 0 and 0.3); a dense chunk (no communication: F&B
   must be exactly F + B); a communication-heavy chunk (all-to-all twice the compute). Columns:
   F, B, F&B (best), F&B (DeepSeek's order), sequential F + B, max(compute, comm), the hidden
   fraction of communication (best / DeepSeek's), proven, the time to derive.
2. Speed: random chunks of 40-50 parts (random lanes and durations, 0-3 W parts a layer,
   comm_share 0-0.6) at the default budget of 0.5 s: how many are proven, the slowest times, and
   the states expanded per second (what `best.NODES_PER_SECOND` is set from).
3. The check: per-part durations from a trace of an overlapped pair and the trace's span. No trace
   is published here, so the example is synthetic (see `synthetic_trace`).
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from dataclasses import replace

from schedc.overlap import Chunk, Part, check_measured, derive_costs
from schedc.overlap.best import NODES_PER_SECOND
from schedc.overlap.chunk import build_problem
from schedc.overlap.deepseek import deepseek_ids
from schedc.overlap.pair import simulate_lanes

V3_F = (Part("attention", 4.1), Part("dispatch", 6.7, True), Part("mlp", 4.6), Part("combine", 8.7, True))
V3_B = (Part("combine", 5.8, True), Part("mlp", 5.3), Part("dispatch", 7.5, True), Part("attention", 8.8))
V3_W = (Part("mlp", 3.5), Part("attention", 2.4))


def chunks() -> list[tuple[str, Chunk]]:
    dense = Chunk(4, (Part("attention", 4.1), Part("mlp", 9.2)), (Part("mlp", 10.6), Part("attention", 8.8)),
                  (Part("mlp", 7.0), Part("attention", 2.4)), 0.15)
    heavy = Chunk(4, tuple(replace(p, duration=p.duration * 2) if p.comm else p for p in V3_F),
                  tuple(replace(p, duration=p.duration * 2) if p.comm else p for p in V3_B), V3_W, 0.15)
    return [("V3-like 1:1, s 0.15", Chunk(4, V3_F, V3_B, V3_W, 0.15)),
            ("V3-like 1:1, s 0", Chunk(4, V3_F, V3_B, V3_W, 0.0)),
            ("V3-like 1:1, s 0.3", Chunk(4, V3_F, V3_B, V3_W, 0.3)),
            ("dense, no comm", dense),
            ("comm-heavy 1:2", heavy)]


def table() -> None:
    print(f"{'chunk':<22}{'F':>8}{'B':>8}{'F&B':>9}{'DeepSeek':>10}{'F+B':>8}{'max(C,M)':>10}"
          f"{'hidden':>14}{'proven':>8}{'time':>9}")
    for name, chunk in chunks():
        start = time.perf_counter()
        d = derive_costs(chunk)
        took = time.perf_counter() - start
        hidden = f"{d.hidden_comm:.1%}/{d.deepseek.hidden_comm:.1%}" if d.comm else "-"
        print(f"{name:<22}{d.F:>8.2f}{d.B:>8.2f}{d.FB:>9.2f}{d.deepseek.makespan:>10.2f}{d.F + d.B:>8.2f}"
              f"{max(d.compute, d.comm):>10.2f}{hidden:>14}{str(d.proven):>8}{took * 1000:>7.1f}ms")
    print("hidden: best / DeepSeek's order. F&B below B is possible: the pair hides communication "
          "that B (a lone backward chunk) leaves exposed.")


def random_chunk(rng: random.Random) -> Chunk:
    """40-50 parts: 1-6 forward and B parts a layer on random lanes, 0-3 W parts (the first named
    after a B part or not, the others after the layer's last B part)."""
    while True:
        nf, nb, nw = rng.randint(1, 6), rng.randint(1, 6), rng.randint(0, 3)
        layers = max(1, round(rng.uniform(40, 50) / (nf + nb + nw)))
        if 40 <= layers * (nf + nb + nw) <= 50:
            break

    def parts(k: int, comm: bool) -> tuple[Part, ...]:
        return tuple(Part(f"p{i}", round(rng.uniform(0.2, 9), 2), comm and rng.random() < 0.5)
                     for i in range(k))

    forward, backward = parts(nf, True), parts(nb, True)
    names = [rng.choice([p.name for p in backward] + ["other"])] + [f"w{i}" for i in range(1, nw)]
    weight = tuple(Part(names[i], round(rng.uniform(0.2, 5), 2)) for i in range(nw))
    return Chunk(layers, forward, backward, weight, rng.choice([0.0, 0.15, 0.3, 0.6]))


def speed(cases: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    times, nodes, proven, gaps = [], 0, 0, []
    for _ in range(cases):
        chunk = random_chunk(rng)
        start = time.perf_counter()
        d = derive_costs(chunk)
        times.append(time.perf_counter() - start)
        nodes += d.nodes
        proven += d.proven
        gaps.append((d.FB - d.lower_bound) / d.FB)
    times.sort()
    print(f"\n{cases} random chunks of 40-50 parts, budget 0.5 s ({int(0.5 * NODES_PER_SECOND)} states): "
          f"proven {proven}/{cases}; time median {statistics.median(times) * 1000:.0f} ms, "
          f"95th {times[int(0.95 * len(times))] * 1000:.0f} ms, max {times[-1] * 1000:.0f} ms; "
          f"{nodes / sum(times):,.0f} states/s; unproven: largest gap to the bound {max(gaps):.1%}")


def synthetic_trace(chunk: Chunk, jitter: float, share: float, seed: int = 0) -> float:
    """A stand-in for a measured pair: DeepSeek's order (what the runtime issues) with every part
    instance's duration off by up to +-`jitter` (per layer, which the model cannot see) and an
    SM share `share` other than the model's; returns its span."""
    rng = random.Random(seed)
    problem = build_problem(replace(chunk, comm_share=share))
    work = tuple(w * (1 + rng.uniform(-jitter, jitter)) for w in problem.work)
    noisy = replace(problem, work=work)
    return simulate_lanes(noisy, *deepseek_ids(noisy)).makespan


def measured_check() -> None:
    chunk = Chunk(4, V3_F, V3_B, V3_W, 0.15)
    span = synthetic_trace(chunk, jitter=0.08, share=20 / 132)
    c = check_measured(chunk, span)
    print(f"\nthe check (synthetic trace: DeepSeek's order, each part +-8% per layer, SM share 20/132; "
          f"the model gets the mean durations and s 0.15): measured span {c.measured:.2f}")
    for name, value, error in (("derived F&B", c.derived, c.derived_error),
                               ("sequential F + B", c.sequential, c.sequential_error),
                               ("max(compute, comm)", c.lanes, c.lanes_error)):
        print(f"  {name:<20}{value:>9.2f}  off by {error:6.1%}")
    print(f"  derived within {c.tolerance:.0%}: {c.derived_close}; both naive figures further: "
          f"{c.naive_off}; check passed: {c.passed}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the table and the check only")
    parser.add_argument("--cases", type=int, default=300, help="random chunks in the speed test")
    args = parser.parse_args()
    table()
    if not args.quick:
        speed(args.cases)
    measured_check()


if __name__ == "__main__":
    main()
