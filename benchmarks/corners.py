"""The corners of the op budget: every shape schedc admits compiles, verifies, simulates and bounds
in under 10 s (issue 24).

    python benchmarks/corners.py            # every corner, each in a fresh child process
    python benchmarks/corners.py --quick    # the small corners only (a sanity run)

Each corner runs in its own child process (nothing cached from the one before), timed step by
step: parse, compile (DAG, order, lowering, verification), simulate, lower bound. Corners: many
chunks (interleaved, 200 and 1000 chunks), many ranks (1F1B, ZB-H1 and DualPipe), many
microbatches (1F1B, ZB-V), a memory limit, each near the 100,000-op budget, and the search
(`search` with its default 5 s budget) on many microbatches, up to the budget's edge, and DualPipe
64 x 512 with a chunk cost and a link (issue 20: transfers on a communication lane per rank, compute
slowed beside them). Target: total < 10 s for each; the
machine is shared, so a figure above the target is measured again before it counts.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

CORNERS = [
    ("many chunks: interleaved 4 x 8, chunks 200", "ranks = 4 microbatches = 8 schedule = interleaved chunks = 200"),
    ("many chunks: interleaved 4 x 8, chunks 1000", "ranks = 4 microbatches = 8 schedule = interleaved chunks = 1000"),
    ("many ranks: 1f1b 1000 x 32", "ranks = 1000 microbatches = 32 schedule = 1f1b"),
    ("many ranks: zb-h1 1000 x 32", "ranks = 1000 microbatches = 32 schedule = zb-h1"),
    ("many ranks: dualpipe 128 x 256", "ranks = 128 microbatches = 256 schedule = dualpipe"),
    ("many microbatches: 1f1b 4 x 12500", "ranks = 4 microbatches = 12500 schedule = 1f1b"),
    ("many microbatches: zbv 4 x 4000", "ranks = 4 microbatches = 4000 schedule = zbv"),
    ("memory limit: 1f1b 100 x 500, limit 120",
     "ranks = 100 microbatches = 500 schedule = 1f1b memory { activation = 1 limit = 120 }"),
    ("search: 8 x 1000, default budget", "ranks = 8 microbatches = 1000 schedule = search"),
    ("search: v 8 x 500, limit 12, default budget",
     "ranks = 8 microbatches = 500 schedule = search placement = v memory { activation = 1 limit = 12 }"),
    ("search: 4 x 8333 (the budget's edge)", "ranks = 4 microbatches = 8333 schedule = search"),
]
# examples/moe_link.sched's cost: DeepSeek-V3's chunk and a link (a corner with its own cost block)
CHUNK_AND_LINK = ("cost { chunk { layers = 4  F { attention = 4.1  dispatch = 6.7  mlp = 4.6  combine = 8.7 } "
                  "B { combine = 5.8  mlp = 5.3  dispatch = 7.5  attention = 8.8 }  W { mlp = 3.5  attention = 2.4 } "
                  "comm_share = 0.15 }  link { bandwidth = 50  latency = 0.5  comm_share = 0.15 }  "
                  "activation_bytes = 400 }")
CORNERS.append(("link: dualpipe 64 x 512, chunk cost and a link",
                f"ranks = 64 microbatches = 512 schedule = dualpipe {CHUNK_AND_LINK}"))
QUICK = [
    ("interleaved 4 x 8, chunks 50", "ranks = 4 microbatches = 8 schedule = interleaved chunks = 50"),
    ("1f1b 100 x 32", "ranks = 100 microbatches = 32 schedule = 1f1b"),
]
COSTS = "cost { F = 1 B = 2 W = 1 comm = 0.1 }"


def time_corner(body: str) -> dict:
    """Seconds per step of one corner (run in this process)."""
    import schedc
    from schedc.compiler import compile_spec
    from schedc.search.bound import lower_bound
    from schedc.simulate import simulate

    source = f"pipeline corner {{ {body} {'' if 'cost {' in body else COSTS} }}"
    t0 = time.perf_counter()
    [spec] = schedc.parse(source, "corner.sched")
    t1 = time.perf_counter()
    compiled = compile_spec(spec)
    t2 = time.perf_counter()
    timeline = simulate(compiled.spec, compiled.dag, compiled.plan)
    t3 = time.perf_counter()
    bound = lower_bound(compiled.spec)
    t4 = time.perf_counter()
    ops = sum(1 for _ in spec.compute_ops())
    return {"ops": ops, "parse": t1 - t0, "compile": t2 - t1, "simulate": t3 - t2, "bound": t4 - t3,
            "total": t4 - t0, "makespan": timeline.makespan, "lower_bound": bound.value}


def in_child(body: str) -> dict:
    code = ("import json, sys; sys.path.insert(0, 'benchmarks'); import corners; "
            f"print(json.dumps(corners.time_corner({body!r})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError((out.stderr.strip().splitlines() or ["no output"])[-1])
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the small corners only")
    args = parser.parse_args()
    print(f"{'corner':<48} {'ops':>7} {'parse':>6} {'compile':>8} {'simulate':>9} {'bound':>6} "
          f"{'total':>6}  makespan / bound")
    worst = 0.0
    for name, body in QUICK if args.quick else CORNERS:
        try:
            r = in_child(body)
        except RuntimeError as error:
            print(f"{name:<48} failed: {error}")
            continue
        worst = max(worst, r["total"])
        print(f"{name:<48} {r['ops']:>7,} {r['parse']:>6.2f} {r['compile']:>8.2f} {r['simulate']:>9.2f} "
              f"{r['bound']:>6.2f} {r['total']:>6.2f}  {r['makespan']:g} / {r['lower_bound']:g}", flush=True)
    print(f"slowest corner: {worst:.2f} s (target < 10 s)")


if __name__ == "__main__":
    main()
