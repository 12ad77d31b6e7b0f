"""One rank of `schedc run`: `torchrun --nproc-per-node N --no-python schedc-rank FILE --model M.py`
(the `schedc-rank` entry point; `-m schedc.backends.torch` is the same program).

Every rank compiles the same file, checks that all ranks hold the same plan (hash), builds its
stages from the model file, trains for the steps (forward, backward, optimizer step), and with
`--check` compares its losses, gradients and parameters with a single-process run of the same
model on the same microbatches (equivalence.py). A failing rank prints which rank, which instruction
and why, and exits non-zero; its peers' transfers then fail and they exit too, naming a peer that
is stuck (bounded by --timeout; watch.py).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import timedelta

import torch
import torch.distributed as dist

from ...compiler import compile_spec
from ...errors import SchedError, SourceFile, render_error
from ...lang.syntax import parse_program
from ...lang.spec import check_pipeline
from .equivalence import TOLERANCE, batch, compare, make_optimizer, reference_run
from .expert_parallel import join_groups
from .expert_parallel.live import LiveBalancer, Rebalancing, after_step, rebalancing_problem, summary
from .expert_parallel.migration import MigrationFailed
from .expert_parallel.steps import (compare_overlap, member_batch, member_reference, refuse_unfit_model, report,
                                    report_parts, run_figures, scaled_loss, whole_losses)
from .layers import stage_builder
from .model_file import load_model
from .profile.activation_memory import ActivationTally, report_memory
from .options import add_rank_options
from .runner import PipelineRunner
from .transfers import plan_digest
from .watch import Watchdog, stuck_peers, wait_for_everyone


def compile_file(path: str, pipeline: str | None):
    text = open(path, encoding="utf-8").read()
    try:
        specs = [check_pipeline(p) for p in parse_program(text, path).pipelines]
        spec = next(s for s in specs if pipeline in (None, s.name))
        if spec.layers is not None:  # stages = auto: every rank chooses the same split
            from ...partition.auto_stages import resolve_stages
            spec = resolve_stages(spec)
        compiled = compile_spec(spec)
        if compiled.search is not None and compiled.search.interrupted:
            raise KeyboardInterrupt  # a search cut short: each rank would hold another plan
        return compiled
    except SchedError as error:
        raise SystemExit(render_error(error, SourceFile(path, text))) from None
    except StopIteration:
        raise SystemExit(f"schedc: error: no pipeline named '{pipeline}' in {path}") from None


def model_stages(model, spec, path: str):
    """The model file's stage builder (its build_stages, or build_layers grouped by the split);
    a located error when the two disagree, before any process group starts."""
    try:
        build = stage_builder(model, spec)
        if spec.layers is not None:
            build(spec.num_stages)  # a missing layer name fails here, at the layer's place
        return build
    except SchedError as error:
        raise SystemExit(render_error(error, SourceFile(path, open(path, encoding="utf-8").read()))) from None


def pick_devices(device_kind: str | None, comm: str | None, rank: int) -> tuple[torch.device, str]:
    """This rank's compute device and process-group backend. NCCL needs one GPU per rank; gloo
    on CUDA lets ranks share GPUs (rank i uses GPU LOCAL_RANK mod the GPU count)."""
    device_kind = device_kind or ("cuda" if torch.cuda.is_available() else "cpu")
    if device_kind == "cpu":
        if comm == "nccl":
            raise SystemExit("schedc: error: NCCL runs on GPUs only; use --device cuda, or gloo on cpu")
        return torch.device("cpu"), "gloo"
    if not torch.cuda.is_available():
        raise SystemExit("schedc: error: --device cuda, but this torch sees no GPU; use --device cpu")
    local, gpus = int(os.environ.get("LOCAL_RANK", rank)), torch.cuda.device_count()
    comm = comm or "nccl"
    if comm == "nccl" and local >= gpus:
        raise SystemExit(f"schedc: error: NCCL needs one GPU per rank, but local rank {local} has "
                         f"only {gpus} GPU(s); add --comm gloo to share GPUs (transfers staged "
                         "through host memory)")
    device = torch.device(f"cuda:{local % gpus}")
    torch.cuda.set_device(device)
    return device, comm


def same_plan_everywhere(digest: str, world: int, device) -> bool:
    mine = torch.tensor(list(bytes.fromhex(digest)), dtype=torch.uint8, device=device)
    everyone = [torch.empty_like(mine) for _ in range(world)]
    dist.all_gather(everyone, mine)
    return all(torch.equal(mine, other) for other in everyone)


def _name_stuck_peers(store, rank: int, world: int) -> None:
    try:
        for line in stuck_peers(store, rank, world):
            print(f"schedc: error: {line}", file=sys.stderr)
    except Exception:  # noqa: BLE001 - the store's host has gone: nothing more to say
        pass


def _check(args, runner, model, build, spec, dtype, grads, losses, comm_device, store, since: float) -> int:
    """Compare with the single-process run; every rank prints where it found a NaN or inf, rank 0
    the largest relative error and PASS/FAIL. 0 when it passes. With EP groups each member
    compares its experts and the whole microbatches' losses. Every process runs the reference
    itself (as long on each, but not at the same pace when processes share cores), so the
    processes meet in the store before the next collective: a peer may take up to --timeout plus
    four times this process's own time since training ended (`since`) to arrive."""
    losses = whole_losses(losses, runner.experts, comm_device)  # a collective: before the reference run
    reference = reference_run(model, spec.num_stages, spec.microbatches, args.steps, dtype, args.lr, build)
    reference = member_reference(reference, runner.experts, runner.modules)
    worst, problems = compare(runner.rank, runner.modules, grads, losses, reference)
    for problem in problems:
        print(f"check: {problem}", flush=True)
    process, world = dist.get_rank(), dist.get_world_size()
    try:
        missing = wait_for_everyone(store, "schedc/checked", process, world,
                                    args.timeout + 4 * (time.monotonic() - since))
    except RuntimeError as error:  # the store's host (process 0) has gone
        _leave(f"schedc: error: process {process}: lost the other processes while they ran --check's "
               f"single-process run ({str(error).splitlines()[0]}); see their messages")
    if missing:
        _leave(f"schedc: error: process {process}: process(es) {', '.join(map(str, missing))} did not finish "
               f"the --check single-process run within {args.timeout:g} s (--timeout) plus four times this "
               "process's own; giving up")
    worst = torch.tensor([worst], dtype=torch.float64, device=comm_device)
    dist.all_reduce(worst, op=dist.ReduceOp.MAX)
    ok = worst.item() <= TOLERANCE[dtype]
    if dist.get_rank() == 0:
        print(f"largest relative error against a single-process run after {args.steps} training step(s) "
              f"(losses, gradients, parameters): {worst.item():.3e} (tolerance {TOLERANCE[dtype]:g}, "
              f"{args.dtype}): {'PASS' if ok else 'FAIL'}", flush=True)
    return 0 if ok else 1


def _write_trace(path: str, runner, steps, compiled, rank: int, world: int, flights, ep: int) -> None:
    """Write the trace of every step (`steps`: each step's records; `flights`: each step's
    all-to-alls, a communication lane under the rank) and, on process 0, compare the measured step
    with the simulated one (`measure.py`; with EP groups, member 0 of each rank)."""
    from ...simulate import simulate
    from .measure import compare_with_simulation, costs_in_milliseconds, merge_trace, write_rank_records

    origin = min((r.start for records in steps for r in records), default=0.0)
    start = torch.tensor([origin], dtype=torch.float64, device=runner.comm_device)
    dist.all_reduce(start, op=dist.ReduceOp.MIN)  # one clock on one host: perf_counter is system-wide
    for records in steps:
        for record in records:
            record.start -= start.item()
            record.end -= start.item()
    flights = [[(label, posted - start.item(), done - start.item()) for label, posted, done in step]
               for step in flights]
    write_rank_records(path, rank, steps, flights)
    dist.barrier()
    if rank == 0:
        parts = merge_trace(path, world, ep)[::ep]
        timeline = simulate(compiled.spec, compiled.dag, compiled.plan)
        print(f"wrote the measured trace to {path}")
        print(compare_with_simulation(parts, timeline, costs_in_milliseconds(compiled.spec)))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m schedc.backends.torch", description=__doc__.splitlines()[0])
    parser.add_argument("file")
    parser.add_argument("--model", required=True, help="a model file (see examples/models/mlp.py)")
    parser.add_argument("--pipeline")
    add_rank_options(parser)
    args = parser.parse_args(argv)
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        raise SystemExit("schedc: error: RANK and WORLD_SIZE are not set: start the ranks with `torchrun "
                         "--nproc-per-node N --no-python schedc-rank ...`, or use `schedc run`")
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    dtype = getattr(torch, args.dtype)
    compiled = compile_file(args.file, args.pipeline)
    spec, plan = compiled.spec, compiled.plan
    model = load_model(args.model)
    build = model_stages(model, spec, args.file)  # a layer the model lacks fails here, before any group
    if args.ep > 1:
        refuse_unfit_model(build(spec.num_stages), batch(model, 1, 0, dtype)[0][0], args.ep)
    if args.rebalance_every:
        problem = rebalancing_problem(build(spec.num_stages), args.ep, args.redundant or 0)
        if problem:
            raise SystemExit(f"schedc: error: {problem}")
    device, comm = pick_devices(args.device, args.comm, rank)
    comm_device = device if comm == "nccl" else torch.device("cpu")
    if args.overlap == "streams" and device.type != "cuda":
        raise SystemExit("schedc: error: --overlap streams needs CUDA; on cpu overlapped pairs run sequentially")
    try:
        dist.init_process_group(comm, timeout=timedelta(seconds=args.timeout))
    except (RuntimeError, ValueError) as error:  # DistStoreError, DistNetworkError: a peer never came
        raise SystemExit(f"schedc: error: rank {rank}: the {world} ranks did not all meet within {args.timeout:g} s "
                         f"(did one fail before joining? see its message): {str(error).splitlines()[0]}") from None
    if not same_plan_everywhere(plan_digest(spec, plan), world, comm_device):
        _leave(f"schedc: error: rank {rank}: the ranks hold different plans; compile the same file "
               "with the same schedc everywhere")
    if world != spec.ranks * args.ep:
        _leave(f"schedc: error: {args.file} has ranks = {spec.ranks}" + (
            f" and --ep {args.ep}, so {spec.ranks * args.ep} processes" if args.ep > 1 else "")
            + f", but {world} processes run it")
    place = join_groups(rank, spec.ranks, args.ep)
    runner = PipelineRunner(spec, plan, place.rank, lambda n: [m.to(dtype) for m in build(n)],
                            scaled_loss(model.loss_fn, args.ep), device=device,
                            free_sent_outputs=not args.keep_sent_outputs, comm_device=comm_device, experts=place)
    runner.synchronize_records = bool(args.trace)
    balancer = None
    if args.rebalance_every:  # before the optimizer and the tally: redundant slots are new parameters
        balancer = LiveBalancer(runner.modules, place, Rebalancing(
            args.rebalance_every, args.window or args.rebalance_every, args.redundant or 0, args.max_moves,
            args.load_log, 0.02 if args.balance_tolerance is None else args.balance_tolerance), comm_device, rank)
    if args.memory:
        runner.tally = ActivationTally([p for m in runner.modules.values() for p in m.parameters()],
                                       spec.activations)
    runner.overlap_way = args.overlap or runner.overlap_way
    store = dist.distributed_c10d._get_default_store()  # private, but the store init_process_group made
    watchdog = Watchdog(store, runner, limit=2 * args.timeout).start()
    optimizer = make_optimizer(model, [p for m in runner.modules.values() for p in m.parameters()], args.lr)
    step_records = []  # each step's instruction timings, for --trace
    flights = []  # each step's all-to-alls (label, posted, finished), for --trace

    def one_step(step: int):
        for module in runner.modules.values():
            module.zero_grad(set_to_none=True)
        inputs, targets = member_batch(*batch(model, spec.microbatches, step, dtype), place)
        if runner.tally is not None:
            runner.tally.start_step()
        try:
            dist.barrier()  # a common start, so the ranks' measured times line up
            losses = runner.step(inputs, targets)
        except RuntimeError as error:
            print(f"schedc: error: {place.describe()} (process {rank}): {error}", file=sys.stderr)
            _name_stuck_peers(store, rank, world)
            sys.stderr.flush()
            os._exit(1)  # do not wait for peers that will never answer
        return losses

    for step in range(args.steps):
        losses = one_step(step)
        step_records.append(runner.records)
        flights.append(runner.flights)
        grads = {key: [None if p.grad is None else p.grad.clone() for p in m.parameters()]
                 for key, m in runner.modules.items()} if args.check else {}
        if optimizer is not None:
            optimizer.step()
        if balancer is not None:
            try:
                after_step(balancer, step, args.steps, optimizer, runner, flights[-1])
            except (MigrationFailed, RuntimeError) as error:
                print(f"schedc: error: {place.describe()} (process {rank}): live rebalancing failed, "
                      f"{error}; no process goes on with a half-moved placement", file=sys.stderr)
                _name_stuck_peers(store, rank, world)
                sys.stderr.flush()
                os._exit(1)
    if balancer is not None:
        summary(balancer)
    if args.ep > 1 or args.compare_overlap:
        figures = run_figures(step_records, comm_device)
        report(f"{runner.overlap_way} pairs" if args.compare_overlap else "measured", *figures, rank)
        if args.compare_overlap:
            compare_overlap(runner, lambda step: (one_step(step), runner.records)[1], args.steps, comm_device,
                            rank, figures)
        if any(parts is not None for parts in runner.parts.values()):
            report_parts(runner, args.file, spec.name, rank, figures[0])
    if args.memory:
        report_memory(runner.tally, compiled, place, args.steps, comm_device, rank, world)
    runner.current = None
    watchdog.stop()
    since = time.monotonic()  # the rest has no collective until --check's verdicts meet
    if args.trace:
        _write_trace(args.trace, runner, step_records, compiled, rank, world, flights, args.ep)
    status = 0
    if args.check:
        status = _check(args, runner, model, build, spec, dtype, grads, losses, comm_device, store, since)
    dist.destroy_process_group()
    return status


def _leave(message: str) -> None:
    """Refuse, exit 1, once the process group exists: without tearing it down, since a peer that
    left first can make gloo's teardown abort this process (seen as exit -6 instead of 1)."""
    print(message, file=sys.stderr, flush=True)
    sys.stdout.flush()
    os._exit(1)


def rank_main(argv=None) -> int:
    """The `schedc-rank` entry point: `main`, with Ctrl-C (every rank gets the terminal's SIGINT)
    ending this rank quietly, exit 130, without a traceback per rank."""
    try:
        return main(argv)
    except KeyboardInterrupt:
        sys.stderr.flush()
        os._exit(130)  # peers in a collective would wait: do not run the exit handlers


if __name__ == "__main__":
    sys.exit(rank_main())
