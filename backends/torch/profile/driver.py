"""`schedc run --profile`: what the command line calls (`profile`) once it has checked its arguments.

It times the model's stages with the runner's own compute (`stage_times.py`; on CPU beside
companions computing as the host's other ranks would, `contention.py`; a `build_layers()` model
layer by layer instead, `layer_costs.py`), measures or computes each transfer (`comm.py`), prints
the figures and what to doubt, makes the cost block (`costblock.py`), and unless `--calibrate 0`
calibrates it with a short traced run of the plan under torchrun (`calibration_run`,
`calibrate.py`: the run's figures, or with more ranks than cores the profiled ones, and comm fitted
to the run's step, `fit.py`). A model whose stages declare chunk parts also gets each part timed,
as a `chunk { }` block in `#` lines (`chunk_parts.py`). It prints to standard output (a valid
.sched fragment) and standard error, and returns the block; the command line writes
`--profile-out`. A problem the command line reports as a usage error is a `ProfileError`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
from pathlib import Path

import torch

from ....compiler import compile_spec
from ....errors import SchedError, SourceFile, decode_source
from ....lang.spec import PipelineSpec, check_program
from ....lang.syntax import parse_program
from ....lang.writer import replace_cost_block
from ..launch import INTERRUPTED, device_problem, overlap_problem, run_torchrun, torchrun_command
from ..model_file import load_model
from . import comm as probe
from .calibrate import calibrated_rows, format_calibration, run_durations, run_sends
from .chunk_parts import chunk_cost_block, declares_parts, profile_parts
from .contention import companions
from .costblock import charge_sends, cost_rows, cross_rank_sends, format_cost_block, sent_bytes
from .fit import fit_comm, format_fit
from .layer_costs import profile_layers
from .stage_times import format_profile_table, profile_stages, recommended_way, sanity_warnings

COST_CHOSEN = ("search", "optimal", "auto")  # schedules whose plan depends on the costs


class ProfileError(Exception):
    """A problem with the command line or this host that stops the profile (the command line
    reports it as a usage error; the message says what to change)."""


def profile(spec: PipelineSpec, args) -> str | None:
    """Time the model's stages with the runner's own compute; print the figures, what to doubt,
    and the cost block, and return the block (None for a `build_layers()` model, whose per-layer
    description is printed instead)."""
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda":
        torch.cuda.set_device(0)
    elif overlap_problem(args):
        raise ProfileError(overlap_problem(args))
    threads = torch.get_num_threads()
    if device.type == "cpu" and spec.ranks > 1:  # as torchrun gives each of several ranks
        threads = int(os.environ.get("OMP_NUM_THREADS", "1"))
        torch.set_num_threads(threads)
    model = load_model(args.model)
    if hasattr(model, "build_layers"):  # measured per layer: a description `schedc partition` reads
        print(f"schedc: per-layer costs of {args.model} ({args.dtype}, this machine; ms and MiB)",
              file=sys.stderr)
        print(json.dumps(profile_layers(model, getattr(torch, args.dtype)), indent=1))
        return None
    processes = spec.ranks * args.ep // args.nnodes  # this host's ranks in a run
    others = companion_count(processes, threads) if device.type == "cpu" and not args.profile_alone else 0
    with companions(args.model, spec.num_stages, args.dtype, others):
        profiles = profile_stages(model, spec.num_stages, getattr(torch, args.dtype), device, args.overlap,
                                  repeats=args.repeats)
    sizes = sent_bytes(profiles)
    if args.bandwidth:
        comm = probe.comm_from_bandwidth(sizes, args.bandwidth)
        how = f"computed from --bandwidth {args.bandwidth:g} GB/s"
        send = [0.0] * len(sizes)
    else:
        transfers, how = measured_comm(sizes, args, device)
        comm, send = transfers.comm, transfers.send
    where = f"{device}" + (f", {threads} thread(s), beside {others} process(es) computing as this host's "
                           "other ranks do (at most one per other core)" if device.type == "cpu" else "")
    print(f"# per-stage costs of {args.model} ({spec.num_stages} stages, {args.dtype}, {where}), all stages "
          f"timed round-robin; each figure the mean of the fastest tenth of its samples after a warm-up, "
          f"±spread (interquartile range / median); comm {how}; send: what posting that transfer costs "
          f"the sending rank ({'none measured: from a bandwidth' if args.bandwidth else 'measured with comm'})")
    print(format_profile_table(profiles, comm, send))
    for warning in sanity_warnings(profiles):
        _warn(warning)
    way = recommended_way(profiles)
    if way is not None and len({w for p in profiles for w in p.pair_ways}) > 1:
        print(f"# overlapped pairs without a hook: {way} is faster here; run with --overlap {way}")
    sends = cross_rank_sends(spec)
    rows = cost_rows(profiles, comm, send, sends)
    block = format_cost_block(rows)
    ran = calibration_run(spec, args, block) if args.calibrate else None
    if ran is not None:
        crowded = device.type == "cpu" and processes * threads > host_cores()
        rows, block = calibrate(spec, args, profiles, (comm, send, sends), ran, crowded)
    charged = [f"stage {r['stage']} {k} +{r['send ' + k]:.3g}" for r in rows for k in ("F", "B") if r["send " + k]]
    if charged:
        print(f"# the block charges each op that sends to another rank ({spec.placement} placement) its send: "
              f"{', '.join(charged)} ms (F&B gets both of its halves'); comm there is what is left after the post")
    chunk = chunk_parts_block(model, spec, args, device)
    if chunk:
        print(chunk)
    print(block)
    return block


def chunk_parts_block(model, spec: PipelineSpec, args, device) -> str | None:
    """When the model's stages declare chunk parts: each part timed (`chunk_parts.py`) as `#` lines
    holding a `chunk { }` cost block, or a line saying why not; else None."""
    if not declares_parts(model, spec.num_stages):
        return None
    if device.type != "cpu":
        return "# chunk parts: timed on cpu only (gloo all-to-alls); run --profile --device cpu for the chunk block"
    print(f"schedc: timing each chunk part on {args.ep} process(es) (--ep {args.ep})", file=sys.stderr)
    measured = profile_parts(args.model, spec.num_stages, args.dtype, args.ep, repeats=max(args.repeats // 2, 4))
    return chunk_cost_block(measured, args.ep) or "# chunk parts: they do not repeat per layer, so no chunk block"


def calibrate(spec: PipelineSpec, args, profiles, transfers, ran, crowded: bool) -> tuple[list[dict], str]:
    """The block's rows and text after the calibration run `ran` ((RunDurations, the compiled
    pipeline it ran)); `transfers`: (comm, the probe's send, `cross_rank_sends`). Each figure the
    run measured is taken from it (`calibrate.py`), unless the host is `crowded` (more ranks than
    cores): then an op's time in the run is its own plus the time other ranks held its core, which
    depends on how the OS took turns, so the block keeps the profiled figures (each op's CPU time)
    and the probe's sends. Either way comm is fitted to the run's step (`fit.py`)."""
    run, compiled = ran
    comm, send, sends = transfers
    plain = cost_rows(profiles, comm)
    calibrated = calibrated_rows(plain, run)
    print(format_calibration(plain, calibrated, run.steps))
    if crowded:
        print(f"# more ranks ({spec.ranks * args.ep} processes) than cores ({host_cores()}): the block keeps the "
              "profiled figures (each op's CPU time) and the probe's sends, not the run's (there an op also waits "
              "while other ranks hold its core, which changes from run to run); that waiting is in the step comm "
              "is fitted to")
        rows = charge_sends(plain, *probe_sends(send), sends)
        origin = f"comm fitted to a {args.calibrate}-step run of the plan"
    else:
        rows = charge_sends(calibrated, *run_sends(run, send), sends)
        origin = f"calibrated by a {args.calibrate}-step run of the plan"
    rows, block = fitted(spec, args, rows, format_cost_block(rows, origin), compiled, run, origin)
    if spec.schedule in COST_CHOSEN and with_block(spec, args, block, Path(args.file).name).plan != compiled.plan:
        print(f"# note: with the calibrated costs, schedule = {spec.schedule} chooses another plan than the one "
              "the calibration ran; the figures are per op and carry over, but --profile on the written file "
              "calibrates with that plan")
    return rows, block


def with_block(spec: PipelineSpec, args, block: str, name: str, folder: str | None = None):
    """The compiled pipeline of the file with `block` as its cost block, written as `name` in
    `folder` (a temporary one when None; compiling checks it as a run would)."""
    with tempfile.TemporaryDirectory(prefix="schedc-profile-") as temporary:
        path = Path(folder or temporary) / name
        path.write_text(replace_cost_block(Path(args.file).read_text(encoding="utf-8"), spec.source.ast, block),
                        encoding="utf-8")
        return compile_spec(_load_pipeline(path, spec.name))


def _load_pipeline(path: Path, name: str) -> PipelineSpec:
    """Pipeline `name` of the file at `path`, checked as `schedc run` checks it (`stages = auto`
    with its chosen split); a SchedError carries the file's text, to be shown at its place."""
    text = decode_source(path.read_bytes(), str(path))
    try:
        spec = next(s for s in check_program(parse_program(text, str(path))) if s.name == name)
        if spec.layers is None:
            return spec
        from ....partition.auto_stages import resolve_stages  # only pipelines with layers need it

        return resolve_stages(spec)
    except SchedError as error:
        error.source = SourceFile(str(path), text)
        raise


def calibration_run(spec: PipelineSpec, args, block: str):
    """Run the plan with the profiled `block` for `--calibrate` steps under torchrun, traced; the
    run's instruction durations (`calibrate.RunDurations`) and the compiled pipeline it ran, or
    None, with the reason printed, when no run can start on this host."""
    why = ("the ranks span several nodes (--nnodes); calibrate on one node with all the ranks"
           if args.nnodes > 1 else device_problem(spec.ranks, args.device, args.comm))
    if why:
        _warn(f"not calibrated by a run: {why}", comment="#")
        return None
    with tempfile.TemporaryDirectory(prefix="schedc-calibrate-") as folder:
        profiled, trace = Path(folder) / Path(args.file).name, Path(folder) / "trace.json"
        compiled = with_block(spec, args, block, profiled.name, folder)
        for_ranks = argparse.Namespace(**{**vars(args), "steps": args.calibrate, "trace": str(trace),
                                          "check": False})
        command = torchrun_command(spec.ranks * args.ep, str(profiled), spec.name, args, for_ranks)
        print(f"schedc: calibrating: {args.calibrate} traced steps of the plan on {spec.ranks} ranks, with the "
              "profiled costs (--calibrate 0 skips this)", file=sys.stderr)
        code = run_torchrun(command, stdout_to_stderr=True)
        if code == INTERRUPTED:  # Ctrl-C: the run said so and stopped every rank; no block to write
            raise SystemExit(INTERRUPTED)
        if code:
            raise ProfileError(f"the calibration run failed (torchrun exit code {code}; the ranks said why "
                               "above); fix that, or skip the run with --calibrate 0")
        return run_durations(json.loads(trace.read_text())), compiled


def companion_count(ranks: int, threads: int) -> int:
    """How many companions compute beside the profile on CPU: one per other rank of this host, but
    never more processes than the cores hold (`threads` each): with more ranks than cores, a
    companion too many takes turns with the profile on a core, and the OS's time slices (several
    ms) land on the timed ops at random (on 2 cores with 3 companions, a 0.5 ms op's spread was
    50-400% and two profiles differed by up to 1.9x in a figure)."""
    return max(min(ranks - 1, host_cores() // max(threads, 1) - 1), 0)


def host_cores() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def probe_sends(send: list[float]) -> tuple[list[float], list[float]]:
    """Each stage's forward and backward send cost from the probe's figures (`costblock.charge_sends`'
    arguments): a backward sends a gradient the size of the previous stage's output."""
    return list(send), [0.0] + list(send[:-1])


def fitted(spec: PipelineSpec, args, rows: list[dict], block: str, ran, run, origin: str) -> tuple[list[dict], str]:
    """`rows` and their block with comm fitted to the calibration run's step (`fit.fit_comm`) on
    the plan it ran (`ran`, compiled), the fit printed; unchanged when the run measured no step."""
    step = run.typical_step()
    if step is None:
        return rows, block
    costs = with_block(spec, args, block, Path(args.file).name).spec.costs
    fit = fit_comm(dataclasses.replace(ran, spec=dataclasses.replace(ran.spec, costs=costs)), step)
    print(format_fit(fit))
    rows = [{**r, "comm": fit.comm(r["comm"])} for r in rows]
    return rows, format_cost_block(rows, origin if "fitted" in origin else f"{origin}, comm fitted to its step")


def measured_comm(sizes: list[int], args, device):
    """Each transfer's time and the sender's cost of posting it (`comm.Transfers`), measured
    between two processes, and how they were measured."""
    backend = args.comm or ("nccl" if device.type == "cuda" else "gloo")
    where = device.type
    if backend == "nccl" and torch.cuda.device_count() < 2:
        backend, where = "gloo", "cpu"  # NCCL needs a GPU per process
    try:
        transfers = probe.measure_comm(sizes, backend, where)
    except RuntimeError as error:
        raise ProfileError(f"{error}; give --bandwidth GB/S to compute comm instead") from None
    return transfers, f"measured between two processes over {backend}" + (" (host memory)" if where != device.type else "")


def _warn(text: str, comment: str = "# warning:") -> None:
    """A warning in the printed block (a comment) and, when standard output goes elsewhere (a file,
    a pipe), on standard error too: on a terminal it shows once."""
    print(f"{comment} {text}")
    if not sys.stdout.isatty():
        print(f"schedc: warning: {text}", file=sys.stderr)
