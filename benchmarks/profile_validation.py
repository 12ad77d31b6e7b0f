"""Does `--profile` predict a real step? Profile a model, write the cost block into a copy of the
file (`--profile-out`), run that file on 2 ranks (gloo, CPU) with `--trace`, and compare the
measured step with the simulated one.

    python benchmarks/profile_validation.py                  # 1f1b, zb-h1, dualpipev
    python benchmarks/profile_validation.py --families 1f1b --steps 3

Model: examples/models/wide_mlp.py (8 Linear-GELU layers of 512, 128 rows, float32), big enough
that compute dominates on CPU; 1f1b and zb-h1 cut it into 2 stages, dualpipev into 4.
Target (issue 13): measured and predicted step within 20% for each family, on an idle machine.
The measured step is the last of `--steps` (the first ones warm up).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "examples" / "models" / "wide_mlp.py"
TARGET = 0.20


def schedc(*args: str) -> str:
    """Run `schedc ARGS` (this interpreter); its standard output, or exit with its error."""
    result = subprocess.run([sys.executable, "-W", "ignore", "-m", "schedc", *args], capture_output=True,
                            text=True, cwd=ROOT)
    if result.returncode:
        sys.exit(f"schedc {' '.join(args)} failed:\n{result.stderr[-3000:]}")
    return result.stdout


def validate(family: str, microbatches: int, steps: int, folder: Path) -> tuple[float, float]:
    """(predicted, measured) step in milliseconds for `family` on 2 ranks."""
    source = folder / f"{family}.sched"
    source.write_text(f"pipeline v {{ ranks = 2 microbatches = {microbatches} schedule = {family} }}\n")
    profiled = folder / f"{family}.profiled.sched"
    schedc("run", str(source), "--model", str(MODEL), "--dtype", "float32", "--profile",
           "--profile-out", str(profiled), "--force")
    out = schedc("run", str(profiled), "--model", str(MODEL), "--dtype", "float32", "--steps", str(steps),
                 "--trace", str(folder / f"{family}.trace.json"))
    found = re.search(r"measured step ([\d.]+) ms; predicted step ([\d.e+]+)", out)
    if not found:
        sys.exit(f"no measured/predicted line in:\n{out}")
    return float(found.group(2)), float(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", default="1f1b,zb-h1,dualpipev")
    parser.add_argument("--microbatches", type=int, default=8)
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args()
    print(f"{'family':<10} {'predicted ms':>13} {'measured ms':>12} {'measured/predicted':>19}  "
          f"within {TARGET:.0%} (target)")
    with tempfile.TemporaryDirectory() as folder:
        for family in args.families.split(","):
            predicted, measured = validate(family, args.microbatches, args.steps, Path(folder))
            ratio = measured / predicted
            print(f"{family:<10} {predicted:>13.1f} {measured:>12.1f} {ratio:>19.3f}  "
                  f"{'yes' if abs(ratio - 1) <= TARGET else 'no'}", flush=True)


if __name__ == "__main__":
    main()
