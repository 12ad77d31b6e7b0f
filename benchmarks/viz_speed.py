"""How fast schedc draws: the SVG (and PNG) timeline of DualPipeV on 32 ranks x 128 microbatches.

    python benchmarks/viz_speed.py [--ranks 32 --microbatches 128]

Target: drawing the 32 x 128 timeline (SVG) takes under 2 s. The compile and simulation are timed
separately (benchmarks/compile_speed.py covers them); PNG rasterizing is reported for information.
"""

from __future__ import annotations

import argparse
import statistics
import time

import schedc
from schedc.viz.png import svg_to_png
from schedc.viz.timeline import Panel, render_timeline_svg


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ranks", type=int, default=32)
    parser.add_argument("--microbatches", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    text = (f"pipeline v {{ ranks = {args.ranks} microbatches = {args.microbatches} schedule = dualpipev "
            "cost { F = 1 B = 2 W = 1 F&B = 3 } }")
    [spec] = schedc.parse(text, "bench.sched")
    compiled = schedc.compile(spec)
    timeline = schedc.simulate(compiled)
    svg_times, png_times = [], []
    for _ in range(args.rounds):
        t0 = time.perf_counter()
        svg = render_timeline_svg([Panel(compiled.spec, timeline)])
        t1 = time.perf_counter()
        png = svg_to_png(svg)
        t2 = time.perf_counter()
        svg_times.append(t1 - t0)
        png_times.append(t2 - t1)
    print(f"DualPipeV {args.ranks} x {args.microbatches}: {len(timeline.slots)} cells, SVG {len(svg) / 1e6:.1f} MB, "
          f"PNG {len(png) / 1e6:.1f} MB")
    print(f"  SVG timeline  {statistics.median(svg_times):.3f} s (median of {args.rounds}; target < 2 s)")
    print(f"  PNG (cairosvg) {statistics.median(png_times):.3f} s")


if __name__ == "__main__":
    main()
