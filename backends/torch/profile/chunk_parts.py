"""`schedc run --profile` of a model whose stages declare chunk parts (the contract in
`expert_parallel/parts.py`, e.g. examples/models/moe.py): each part timed, printed as the `chunk { }`
cost block that `expert_parallel/chunk_profile.py` makes from part timings (issue 20, part 5).

How: `members` processes (the run's `--ep`; gloo, one thread each) join one EP group, each keeps
1/members of every MoE layer's experts (`expert_parallel.groups`) and takes its 1/members of a
microbatch, as the members of one pipeline rank do in a run. Each stage's chunk then runs alone,
part by part, with `ChunkRun` and `sequential` (nothing else in flight): its forward, its
input-gradient backward (the block's B) and its weight-gradient backward (W), `warmup` untimed and
`repeats` timed times. A compute part's figure is its time with nothing beside it; an all-to-all's
is its time on the real process group, from posted to done. Every member's samples are pooled and
`chunk_profile.chunk_block` takes their median per part, per layer. With `--ep 1` the one process
runs in the profile's own and an all-to-all is the identity (about 0 ms): the block says so.
"""

from __future__ import annotations

import os
import tempfile

import torch

from ..expert_parallel.chunk_profile import chunk_block, measured_cost_block
from ..expert_parallel.groups import ExpertParallel, join_groups, member_slice, shard_experts
from ..expert_parallel.parts import ChunkRun, parts_of, sequential
from ..model_file import load_model
from .contention import start_helpers


def declares_parts(model, num_stages: int) -> bool:
    """Whether any stage `model.build_stages` makes follows the chunk-parts contract."""
    return any(parts_of(module) is not None for module in model.build_stages(num_stages))


def time_parts(model, num_stages: int, dtype, place: ExpertParallel, repeats: int = 10,
               warmup: int = 2) -> dict[int, tuple[list[tuple[str, bool]], list[tuple[str, str, float]]]]:
    """Per stage with parts: (its parts as (name, is an all-to-all), the (section, part, seconds)
    timings of `repeats` runs of its chunk alone), on this process's place in its EP group."""
    stages = [m.to(dtype) for m in model.build_stages(num_stages)]
    shard_experts(stages, place)
    inputs, targets = model.make_batch(1)
    x = member_slice(inputs[0].to(dtype), place)
    target = member_slice(targets[0].to(dtype), place)
    generator = torch.Generator().manual_seed(0)
    found = {}
    for s, module in enumerate(stages):
        parts = parts_of(module)
        last = s == num_stages - 1
        with torch.no_grad():
            out = module(x)
        grad = None if last else torch.randn(out.shape, generator=generator, dtype=dtype)
        if parts is not None:
            timings = []
            for round_ in range(warmup + repeats):
                chunk = ChunkRun(parts, x.detach().requires_grad_(s > 0), f"stage {s}",
                                 model.loss_fn if last else None, target if last else None)
                times = timings if round_ >= warmup else []
                params = list(module.parameters())
                sequential(chunk.forward(times))
                sequential(chunk.backward(grad, weights=False, params=params, timings=times))
                chunk.weight(params)
                module.zero_grad(set_to_none=True)
            found[s] = ([(p.name, p.exchange is not None) for p in parts], timings)
        x = out.detach()
    return found


def _member(member: int, members: int, store: str, model_path: str, num_stages: int, dtype_name: str,
            repeats: int, results) -> None:
    """One EP member's process: join the group, time the parts, hand the timings back."""
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=member, world_size=members)
    try:
        place = join_groups(member, 1, members)
        results.put((member, time_parts(load_model(model_path), num_stages, getattr(torch, dtype_name), place,
                                        repeats)))
    finally:
        dist.destroy_process_group()


def profile_parts(model_path: str, num_stages: int, dtype_name: str, members: int, repeats: int = 10,
                  timeout: float = 300) -> dict[int, tuple[list, list]]:
    """`time_parts` on `members` processes joined as one EP group (in this process when 1), every
    member's timings of a stage pooled."""
    if members <= 1:
        return time_parts(load_model(model_path), num_stages, getattr(torch, dtype_name),
                          ExpertParallel(0, 0, 1, None), repeats)
    context = torch.multiprocessing.get_context("spawn")
    results = context.Queue()
    with tempfile.TemporaryDirectory(prefix="schedc-parts-") as folder:
        store = os.path.join(folder, "store")
        processes = [context.Process(target=_member, args=(m, members, store, model_path, num_stages, dtype_name,
                                                           repeats, results), daemon=True) for m in range(members)]
        start_helpers(processes)
        try:
            got = [results.get(timeout=timeout) for _ in processes]
        finally:
            for process in processes:
                process.join(timeout=10)
                if process.is_alive():
                    process.kill()
    pooled: dict[int, tuple[list, list]] = {}
    for _member_index, found in sorted(got, key=lambda item: item[0]):
        for s, (parts, timings) in found.items():
            pooled.setdefault(s, (parts, []))[1].extend(timings)
    return pooled


def chunk_cost_block(measured: dict[int, tuple[list, list]], members: int) -> str | None:
    """The printed `chunk { }` cost block (`#` lines: the block the profile writes stays the F, B,
    W one) from `profile_parts`' timings, or None when no stage's parts repeat per layer."""
    blocks = {s: chunk_block(parts, timings) for s, (parts, timings) in measured.items()}
    if not blocks or any(block is None for block in blocks.values()) or 0 not in blocks:
        return None
    where = (f"the all-to-alls on {members} gloo processes joined as one EP group (--ep {members})" if members > 1
             else "--ep 1: no EP group, each all-to-all the identity (pass --ep E to time them on E processes)")
    lines = [f"# chunk parts, each run alone (median, ms per layer); {where}; to model the overlap, use this "
             "block in place of F, B, W:"]
    return "\n".join(lines + [f"#   {line}" for line in measured_cost_block(blocks).splitlines()])
