"""Do two `--profile`s agree, and does the profile predict the step? (issue 24, section 3)

    python benchmarks/profile_repeat.py                 # examples/1f1b.sched, transformer.py
    python benchmarks/profile_repeat.py --rounds 3      # three times over, a summary at the end
    python benchmarks/profile_repeat.py --file F.sched --model M.py --steps 12 -- --calibrate 8

Each round runs `schedc run FILE --model MODEL --profile --profile-out` twice in a row (profiles A
and B), then the file B wrote with `--trace` for `--steps` steps (the measured run), and prints:
- per stage, each F, B and W of the two cost blocks and their ratio (the larger over the
  smaller); target: every ratio at most 1.30;
- the measured step (the median of the steps after the first) over the step predicted from
  profile B (the simulated makespan of its block); target: within 20% (0.80-1.20). Beside it,
  profile A's prediction and the step each profile's calibration run measured.
Before each round: `uptime`'s load averages (the targets are for an idle 2-core machine; this
script's own ranks raise the load to about 2-4 while it runs). Arguments after `--` go to both
profiles (say `--calibrate 8`). The exit status is 0 whatever the figures: it is a benchmark.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIGURE_TARGET = 1.30  # two profiles: the larger of a figure over the smaller
STEP_TARGET = 0.20  # measured step within this fraction of the predicted one
MEASURED = re.compile(r"measured step ([\d.]+) ms; predicted step ([\d.e+-]+)")


def schedc(*args: str) -> tuple[str, str, float]:
    """Run `schedc ARGS` with this interpreter: standard output, standard error, seconds."""
    start = time.monotonic()
    result = subprocess.run([sys.executable, "-W", "ignore", "-m", "schedc", *args], capture_output=True,
                            text=True, cwd=ROOT)
    if result.returncode:
        sys.exit(f"schedc {' '.join(args)} failed:\n{result.stderr[-3000:]}")
    return result.stdout, result.stderr, time.monotonic() - start


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def block_figures(path: Path) -> list[dict[str, float]]:
    """Each stage's F, B, W (ms) in the cost block of the profiled file at `path`."""
    import schedc as api

    [spec] = api.load(path)
    return [{"F": c.forward, "B": c.backward, "W": c.weight} for c in spec.costs]


def predicted_step(path: Path) -> float:
    """The simulated makespan (ms) of the profiled file at `path`."""
    import schedc as api

    [spec] = api.load(path)
    return api.simulate(api.compile(spec)).makespan


def machine_speed() -> float:
    """Milliseconds per 256 x 256 float64 matmul on one thread (the median of 200 after a warm-up):
    how fast this machine is right now. A host's other tenants change it by tens of percent for
    tens of seconds without a process of theirs showing here, and every figure of a profile taken
    then moves alike; printed beside each profile to tell such a change from the profile's own
    error."""
    from profile_validation import machine_speed as matmul_ms  # benchmarks/, beside this script

    return matmul_ms(256, "float64", rounds=200, warmup=20)


def profile(source: Path, model: Path, out: Path, extra: list[str]) -> dict:
    """One `--profile` writing `out`: its seconds, the load and the machine's speed before it, and
    the step its calibration run measured (None when it did not calibrate)."""
    load, speed = load_average(), machine_speed()
    _out, err, seconds = schedc("run", str(source), "--model", str(model), "--profile", "--profile-out", str(out),
                                "--force", *extra)
    calibration = MEASURED.search(err)
    return {"seconds": seconds, "load": load, "speed": speed,
            "calibration": float(calibration.group(1)) if calibration else None}


def one_round(args, folder: Path) -> dict:
    """Profiles A and B, then the measured run of B's file; the figures this script prints."""
    a, b = folder / "a.sched", folder / "b.sched"
    runs = [profile(args.file, args.model, a, args.extra), profile(args.file, args.model, b, args.extra)]
    speed = machine_speed()
    out, _err, _seconds = schedc("run", str(b), "--model", str(args.model), "--steps", str(args.steps),
                                 "--trace", str(folder / "trace.json"))
    found = MEASURED.search(out)
    if not found:
        sys.exit(f"no measured step in:\n{out}")
    measured = float(found.group(1))
    ratios = [{k: max(x[k], y[k]) / min(x[k], y[k]) if min(x[k], y[k]) > 0 else float("inf") for k in x}
              for x, y in zip(block_figures(a), block_figures(b))]
    return {"runs": runs, "A": block_figures(a), "B": block_figures(b), "ratios": ratios, "measured": measured,
            "predicted": [predicted_step(a), predicted_step(b)], "speed": speed}


def report(result: dict) -> str:
    """The round's figures as text, each beside its target."""
    lines = [f"profile {name}: {run['seconds']:.0f} s (before it: load {run['load']}, matmul {run['speed']:.3f} ms)"
             for name, run in zip("AB", result["runs"])]
    lines.append(f"{'stage':>5} {'fig':>3} {'A ms':>9} {'B ms':>9} {'ratio':>7}  target <= {FIGURE_TARGET:.2f}")
    for s, (x, y, r) in enumerate(zip(result["A"], result["B"], result["ratios"])):
        for k in ("F", "B", "W"):
            lines.append(f"{s:>5} {k:>3} {x[k]:>9.4g} {y[k]:>9.4g} {r[k]:>7.3f}  "
                         f"{'ok' if r[k] <= FIGURE_TARGET else 'MISS'}")
    worst = max(max(r.values()) for r in result["ratios"])
    within = sum(v <= FIGURE_TARGET for r in result["ratios"] for v in r.values())
    total = sum(len(r) for r in result["ratios"])
    ratio = result["measured"] / result["predicted"][1]
    calibrations = ", ".join("-" if r["calibration"] is None else f"{r['calibration']:.2f}" for r in result["runs"])
    level = sum(y[k] for y in result["B"] for k in y) / sum(x[k] for x in result["A"] for k in x)
    shape = max(max(y[k] / level, x[k]) / min(y[k] / level, x[k]) for x, y in zip(result["A"], result["B"]) for k in x)
    lines += [f"figures within {FIGURE_TARGET:.2f}x: {within} of {total}; worst ratio {worst:.3f}; B's figures "
              f"{level:.3f}x A's in sum, and with that level taken out the worst ratio is {shape:.3f}",
              f"measured step {result['measured']:.2f} ms; predicted from B {result['predicted'][1]:.2f} ms "
              f"(from A {result['predicted'][0]:.2f}); measured / predicted = {ratio:.3f}  target "
              f"{1 - STEP_TARGET:.2f}-{1 + STEP_TARGET:.2f}: {'ok' if abs(ratio - 1) <= STEP_TARGET else 'MISS'}",
              f"calibration runs' steps (A, B): {calibrations} ms; matmul before the measured run "
              f"{result['speed']:.3f} ms"]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--file", type=Path, default=ROOT / "examples" / "1f1b.sched")
    parser.add_argument("--model", type=Path, default=ROOT / "examples" / "models" / "transformer.py")
    parser.add_argument("--steps", type=int, default=20, help="steps of the measured run (default 20)")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("extra", nargs="*", help="after --: arguments for both profiles")
    args = parser.parse_args()
    summary = []
    for round_ in range(1, args.rounds + 1):
        print(f"# round {round_}, {time.strftime('%H:%M:%S', time.gmtime())} UTC, load average {load_average()} "
              f"({os.cpu_count()} cores)", flush=True)
        with tempfile.TemporaryDirectory(prefix="schedc-repeat-") as folder:
            result = one_round(args, Path(folder))
        print(report(result), flush=True)
        summary.append((max(max(r.values()) for r in result["ratios"]), result["measured"] / result["predicted"][1]))
    if len(summary) > 1:
        print("# summary: round, worst figure ratio (<= 1.30), measured / predicted (0.80-1.20)")
        for round_, (worst, ratio) in enumerate(summary, 1):
            print(f"{round_:>3} {worst:>8.3f} {ratio:>8.3f}")
    print(f"# load average at the end: {load_average()}")


if __name__ == "__main__":
    main()
