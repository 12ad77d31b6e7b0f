"""`schedc balance`: replicate and place MoE experts on GPUs (EPLB, schedc.experts). The work and
the report are in cli/balance_report.py; this module parses the arguments and writes the files
(numpy and scipy are imported only when the command runs, so the parser builds without the
balance extra)."""

from __future__ import annotations

import importlib.util
import sys

from .common import UsageError, check_folder, to_png, write_output

NEEDS = "this command needs numpy and scipy: pip install 'schedc[balance]'"


def missing_modules() -> list[str]:
    """The balance extra's modules that are not installed."""
    return [name for name in ("numpy", "scipy") if importlib.util.find_spec(name) is None]


def register(sub) -> None:
    """Add balance to the `schedc` parser's subcommands."""
    p = sub.add_parser("balance", help="replicate and place MoE experts on GPUs from per-expert loads "
                       "(DeepSeek's EPLB, and a better joint policy)")
    p.add_argument("file", metavar="LOADS", help="per-expert loads: .csv (one row per layer, one column "
                   "per expert), .npy, .json or a torch .pt tensor")
    p.add_argument("--replicas", type=int, required=True, help="physical expert slots per layer "
                   "(experts + redundant copies), a multiple of --gpus")
    p.add_argument("--gpus", type=int, required=True, help="GPUs (expert-parallel ranks)")
    p.add_argument("--nodes", type=int, default=1, help="server nodes (default 1)")
    p.add_argument("--groups", type=int, default=1, help="expert groups (default 1)")
    p.add_argument("--policy", choices=("best", "eplb"), default="best", help="best (default): joint "
                   "search, never worse than eplb; eplb: DeepSeek's plan exactly")
    shape = p.add_mutually_exclusive_group()
    shape.add_argument("--hierarchical", dest="hierarchical", action="store_true", default=None,
                       help="keep each expert group on one node (default when groups divide over nodes)")
    shape.add_argument("--global", dest="hierarchical", action="store_false",
                       help="place experts on any GPU, ignoring groups and nodes")
    p.add_argument("--allow-duplicates", action="store_true", help="let best put two replicas of an "
                   "expert on one GPU")
    p.add_argument("--previous", metavar="PLACEMENT", help="the placement in use (a JSON written by -o, or "
                   "a phy2log array): keep as many experts in their slots as possible")
    p.add_argument("--max-moves", type=int, help="with --previous: change at most this many slots per layer")
    p.add_argument("--tolerance", type=float, help="with --previous: change only the slots that bring each "
                   "layer's slowest GPU within 1 + T of a lower bound on any plan, greedily, else of the best "
                   "plan's (what schedc run --rebalance-every does, T = 0.02 by default)")
    p.add_argument("--speeds", help="relative GPU speeds, one per GPU: 1,1,0.5,... or 16x1,16x0.5")
    p.add_argument("-o", "--output", help="write the placement JSON here (phy2log, log2phy, logcnt, "
                   "per-GPU loads)")
    p.add_argument("--svg", help="draw per-GPU loads before and after as SVG")
    p.add_argument("--png", help="the same picture as PNG (needs cairosvg)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table: "
                   "per-layer balancedness of each plan, the bound, the gap, moves, and the placement")
    p.set_defaults(func=cmd_balance)


def cmd_balance(args) -> int:
    missing = missing_modules()
    if missing:
        raise UsageError(f"{NEEDS} (missing: {', '.join(missing)})")
    import json

    from .balance_report import BalanceRequest, picture_series, report_json, run_balance
    for output in (args.output, args.svg, args.png):  # every output's folder, before the work
        check_folder(output)
    request = BalanceRequest(args.file, args.replicas, args.gpus, args.nodes, args.groups, args.policy,
                             args.hierarchical, args.allow_duplicates, args.previous, args.max_moves,
                             args.speeds, args.tolerance)
    result = run_balance(request)
    sys.stdout.write(json.dumps(report_json(result), indent=1) + "\n" if args.json else result.report)
    inputs = [args.file] + ([args.previous] if args.previous else [])
    if args.output:
        write_output(json.dumps(result.placement) + "\n", args.output, inputs)
    if args.svg or args.png:
        from ..viz.experts import render_expert_loads_svg
        svg = render_expert_loads_svg(*picture_series(result))
        if args.svg:
            write_output(svg, args.svg, inputs)
        if args.png:
            write_output(to_png(svg), args.png, inputs)
    return 0
