"""Does `--profile` predict a real step? Profile a model, write the cost block into a copy of the
file (`--profile-out`), run that file on 2 ranks (gloo, CPU) with `--trace`, and compare the
measured step with the simulated one.

    python benchmarks/profile_validation.py                  # 1f1b, zb-h1, dualpipev
    python benchmarks/profile_validation.py --families 1f1b --steps 3
    python benchmarks/profile_validation.py --agreement      # two profiles: per-figure difference

Model: examples/models/wide_mlp.py (8 Linear-GELU layers of 512, 128 rows, float32), big enough
that compute dominates on CPU; 1f1b and zb-h1 cut it into 2 stages, dualpipev into 4.
The profile times each stage beside a process computing as the other rank does (the default on
CPU; see backends/torch/companions.py).
Target (issue 13): measured and predicted step within 20% for each family, on an idle machine.
The measured step is the last of `--steps` (the first ones warm up).

A second prediction tells the two sources of error apart: "replayed" simulates the same plan with
each op's cost taken from the measured step itself (the median duration of each kind of op per
stage in the trace; comm from the profile). measured/replayed near 1 says the simulator's model of
a run holds, and what remains between measured and predicted is the profile's (on a loaded machine:
the load changing between the profile and the run).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "examples" / "models" / "wide_mlp.py"
TARGET = 0.20


def run_schedc(*args: str) -> str:
    """Run `schedc ARGS` (this interpreter); its standard output, or exit with its error."""
    result = subprocess.run([sys.executable, "-W", "ignore", "-m", "schedc", *args], capture_output=True,
                            text=True, cwd=ROOT)
    if result.returncode:
        sys.exit(f"schedc {' '.join(args)} failed:\n{result.stderr[-3000:]}")
    return result.stdout


def replayed(profiled: Path, trace: Path) -> float:
    """The simulated step with each op's cost from the measured trace (see the module docstring)."""
    import schedc
    from schedc.ir import OpKind, parse_instr_token

    [spec] = schedc.load(profiled)
    durations: dict[tuple[str, int], list[float]] = {}
    for event in json.loads(trace.read_text())["traceEvents"]:
        if event["ph"] != "X" or event["cat"] not in ("F", "B", "I", "W", "OVERLAP"):
            continue
        instr = parse_instr_token(event["name"])
        stage = instr.parts[0].stage if instr.kind is OpKind.OVERLAP else instr.stage
        durations.setdefault((event["cat"], stage), []).append(event["dur"] / 1e3)
    costs = []
    for s, cost in enumerate(spec.costs):
        median = {k: statistics.median(durations[(k, s)]) for k in ("F", "B", "I", "W", "OVERLAP")
                  if (k, s) in durations}
        f = median.get("F", cost.forward)
        w = median.get("W", cost.weight)
        b = median.get("B", median["I"] + w if "I" in median else cost.backward)
        fb = min(max(median.get("OVERLAP", f + b), f, b), f + b)
        costs.append(dataclasses.replace(cost, forward=f, backward=b, weight=min(w, b), overlap=fb))
    compiled = schedc.compile(dataclasses.replace(spec, costs=tuple(costs)))
    return schedc.simulate(compiled).makespan


def validate(family: str, microbatches: int, steps: int, folder: Path) -> tuple[float, float, float]:
    """(predicted, replayed, measured) step in milliseconds for `family` on 2 ranks."""
    source = folder / f"{family}.sched"
    source.write_text(f"pipeline v {{ ranks = 2 microbatches = {microbatches} schedule = {family} }}\n")
    profiled = folder / f"{family}.profiled.sched"
    run_schedc("run", str(source), "--model", str(MODEL), "--dtype", "float32", "--profile",
           "--profile-out", str(profiled), "--force")
    trace = folder / f"{family}.trace.json"
    out = run_schedc("run", str(profiled), "--model", str(MODEL), "--dtype", "float32", "--steps", str(steps),
                 "--trace", str(trace))
    found = re.search(r"measured step ([\d.]+) ms; predicted step ([\d.e+]+)", out)
    if not found:
        sys.exit(f"no measured/predicted line in:\n{out}")
    return float(found.group(2)), replayed(profiled, trace), float(found.group(1))


def profile_costs(family: str, microbatches: int, folder: Path):
    """The stage costs one `--profile` of the model measures (comm left out: it is measured apart)."""
    import schedc
    source = folder / f"{family}.sched"
    source.write_text(f"pipeline v {{ ranks = 2 microbatches = {microbatches} schedule = {family} }}\n")
    out = run_schedc("run", str(source), "--model", str(MODEL), "--dtype", "float32", "--profile", "--bandwidth", "10")
    [spec] = schedc.parse(f"pipeline v {{ ranks = 2 microbatches = {microbatches} schedule = {family}\n"
                          f"{out[out.index('cost {'):]} }}", "profile.sched")
    return spec.costs


def agreement(microbatches: int) -> None:
    """Profile twice; print each figure's relative difference (target: within 10% on an idle machine)."""
    with tempfile.TemporaryDirectory() as folder:
        first, second = (profile_costs("dualpipev", microbatches, Path(folder)) for _ in range(2))
    print(f"{'stage':>5} " + " ".join(f"{k:>8}" for k in ("F", "B", "W", "F&B")) + "   (two profiles, |a-b|/a)")
    for stage, (a, b) in enumerate(zip(first, second)):
        pairs = [(a.forward, b.forward), (a.backward, b.backward), (a.weight, b.weight),
                 (a.overlap_cost, b.overlap_cost)]
        print(f"{stage:>5} " + " ".join(f"{abs(x - y) / x:>8.1%}" for x, y in pairs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", default="1f1b,zb-h1,dualpipev")
    parser.add_argument("--microbatches", type=int, default=8)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--agreement", action="store_true", help="profile twice and compare instead")
    args = parser.parse_args()
    if args.agreement:
        agreement(args.microbatches)
        return
    print(f"{'family':<10} {'predicted ms':>13} {'measured ms':>12} {'measured/predicted':>19}  "
          f"{'within ' + format(TARGET, '.0%'):<10} {'replayed ms':>12} {'measured/replayed':>18}")
    with tempfile.TemporaryDirectory() as folder:
        for family in args.families.split(","):
            predicted, replay, measured = validate(family, args.microbatches, args.steps, Path(folder))
            ratio = measured / predicted
            print(f"{family:<10} {predicted:>13.1f} {measured:>12.1f} {ratio:>19.3f}  "
                  f"{'yes' if abs(ratio - 1) <= TARGET else 'no':<10} {replay:>12.1f} {measured / replay:>18.3f}",
                  flush=True)


if __name__ == "__main__":
    main()
