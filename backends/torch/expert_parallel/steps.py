"""The rank program's expert-parallel steps (`schedc run --ep E`, `--compare-overlap`): what each
member trains on, the losses and the reference `--check` compares with, and the run's numbers.

Numbers per run (printed by process 0): the measured step (the median over the steps after the
first, the slowest process) and the exposed communication (the time the compute lane waited on
all-to-alls, per step, the most of any process, the same median). With `--compare-overlap` the
same steps run again with overlapped pairs run one chunk after the other, so the two can be read
side by side: hidden = 1 - exposed(overlapped) / exposed(sequential).
"""

from __future__ import annotations

import copy
import statistics
import sys

import torch
import torch.distributed as dist

from .groups import ExpertParallel, expert_layers, experts_problem, member_slice, shard_experts, slicing_problem


def refuse_unfit_model(stages: list[torch.nn.Module], microbatch: torch.Tensor, size: int) -> None:
    """Exit with the reason when the model cannot run with EP groups of `size` (no experts,
    experts not divisible, microbatches that do not cut in `size` equal parts)."""
    problem = experts_problem(stages, size) or slicing_problem(microbatch, size)
    if problem:
        raise SystemExit(f"schedc: error: {problem}")


def scaled_loss(loss_fn, size: int):
    """The loss each member backpropagates: its part's loss over `size`, so the members' gradients
    sum to the whole microbatch's (for a mean loss)."""
    if size == 1:
        return loss_fn
    return lambda output, target: loss_fn(output, target) / size


def member_batch(inputs, targets, place_: ExpertParallel):
    """This member's part of every microbatch."""
    return [member_slice(x, place_) for x in inputs], [member_slice(y, place_) for y in targets]


def whole_losses(losses: dict, place_: ExpertParallel, device) -> dict:
    """The whole microbatches' losses: the members' (scaled) losses summed over the EP group."""
    if place_.size == 1:
        return losses
    out = {}
    for key in sorted(losses):
        total = losses[key].detach().to(device).clone()
        dist.all_reduce(total, group=place_.group)
        out[key] = total
    return out


def member_reference(reference, place_: ExpertParallel, modules: dict | None = None):
    """The single-process reference cut like this member: its stages keep this member's experts,
    and the gradients follow the parameters they belong to. When this member's layers (in
    `modules`, (direction, stage) -> module) hold a placement (`phy2log`, after live rebalancing
    or with redundant slots), each of its slots gets a copy of the reference expert it holds."""
    stages, grads, losses = reference
    if place_.size == 1:
        return reference
    for stage, gs in zip(stages, grads):
        for p, g in zip(stage.parameters(), gs):
            p.grad = g
    placed = {}
    for (_d, s), module in (modules or {}).items():
        placed[s] = [getattr(layer, "phy2log", None) for layer in expert_layers([module])]
    for s, stage in enumerate(stages):
        layers = expert_layers([stage])
        if s in placed and any(p is not None for p in placed[s]):
            for layer, placement in zip(layers, placed[s]):
                per = placement.numel() // place_.size
                mine = placement[place_.member * per:(place_.member + 1) * per].tolist()
                layer.experts = torch.nn.ModuleList(_copy_with_grads(layer.experts[e]) for e in mine)
        else:
            shard_experts([stage], ExpertParallel(place_.rank, place_.member, place_.size, None))
    return stages, [[p.grad for p in stage.parameters()] for stage in stages], losses


def _copy_with_grads(module: torch.nn.Module) -> torch.nn.Module:
    twin = copy.deepcopy(module)
    for p, q in zip(module.parameters(), twin.parameters()):
        q.grad = None if p.grad is None else p.grad.clone()
    return twin


def step_figures(records) -> tuple[float, float]:
    """One process's step: (seconds from its first instruction's start to its last one's end,
    seconds its compute lane waited on all-to-alls)."""
    if not records:
        return 0.0, 0.0
    return records[-1].end - records[0].start, sum(r.waited for r in records)


def run_figures(steps, device) -> tuple[float, float]:
    """(measured step, exposed communication) of a run, seconds: per step the most of any process,
    then the median over the steps after the first."""
    figures = torch.tensor([step_figures(records) for records in steps], dtype=torch.float64, device=device)
    dist.all_reduce(figures, op=dist.ReduceOp.MAX)
    rows = figures.cpu().tolist()
    counted = rows[1:] if len(rows) > 1 else rows
    return statistics.median(r[0] for r in counted), statistics.median(r[1] for r in counted)


def report(label: str, step: float, exposed: float, process: int) -> None:
    if process == 0:
        share = f" ({exposed / step:.0%} of the step)" if step else ""
        print(f"{label}: step {step * 1e3:.2f} ms, exposed communication {exposed * 1e3:.2f} ms{share} "
              "(median over the steps after the first; the slowest process)", flush=True)


def compare_overlap(runner, run_one_step, steps: int, device, process: int, overlapped: tuple[float, float]):
    """Run `steps` more steps with overlapped pairs sequential (no optimizer step, gradients
    dropped) and print both runs' figures and the share of communication the overlap hid."""
    way = runner.overlap_way
    runner.overlap_way = "sequential"
    try:
        records = [run_one_step(step) for step in range(steps)]
    finally:
        runner.overlap_way = way
    for module in runner.modules.values():
        module.zero_grad(set_to_none=True)
    step, exposed = run_figures(records, device)
    report("sequential pairs", step, exposed, process)
    if process == 0 and exposed > 0:
        print(f"overlap hid {1 - overlapped[1] / exposed:.0%} of the sequential run's exposed communication; "
              f"step {overlapped[0] / step:.2f}x the sequential one", flush=True)
    sys.stdout.flush()


def report_parts(runner, source: str, pipeline: str, process: int, measured_step: float) -> None:
    """Process 0 prints the chunk parts the processes timed as a cost block, and the step the
    simulator predicts from it beside the measured one (chunk_profile.py)."""
    from .chunk_profile import chunk_block, measured_cost_block, predicted_step

    mine = [(s, [(p.name, p.exchange is not None) for p in parts], runner.part_times[(d, s)])
            for (d, s), parts in runner.parts.items() if parts is not None]
    everyone = [None] * dist.get_world_size()
    dist.all_gather_object(everyone, mine)
    if process != 0:
        return
    parts_of, timings = {}, {}
    for stage, parts, times in (entry for entries in everyone for entry in entries):
        parts_of[stage] = parts
        timings.setdefault(stage, []).extend(times)
    blocks = {s: chunk_block(parts_of[s], timings[s]) for s in sorted(parts_of)}
    if len(blocks) != runner.spec.num_stages or any(b is None for b in blocks.values()):
        print("chunk parts: not every stage's parts were timed alone (or they do not repeat per layer); "
              "no prediction", flush=True)
        return
    block = measured_cost_block(blocks)
    print("the chunk parts as measured (paste into the .sched file; `schedc compare` then ranks the "
          f"families on them):\n{block}", flush=True)
    _text, timeline, exposed = predicted_step(source, pipeline, block)
    if timeline is None:
        print(_text, flush=True)
        return
    print(f"predicted from the measured parts: step {timeline.makespan:.2f} ms, exposed communication "
          f"{max(e for _, e in exposed):.2f} ms (the most of any rank); measured step {measured_step * 1e3:.2f} ms "
          f"(ratio {measured_step * 1e3 / timeline.makespan:.2f})", flush=True)
