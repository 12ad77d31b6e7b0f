"""One rank of a pipeline step on PyTorch's own runtime (`_PipelineScheduleRuntime`), driven by a
CSV that schedc exported. Started by tests/test_torch_runtime.py, one process per rank (gloo).

    python torch_runtime_worker.py CSV PLACEMENT NUM_STAGES MICROBATCHES OUT_DIR
"""

import os
import sys

import torch
import torch.distributed as dist

WIDTH, BATCH = 6, 8


def stage_module(stage: int) -> torch.nn.Module:
    """Stage `stage` of the model, the same in every process (seeded by stage)."""
    torch.manual_seed(1000 + stage)
    return torch.nn.Sequential(torch.nn.Linear(WIDTH, WIDTH), torch.nn.Tanh()).double()


def batch():
    torch.manual_seed(7)
    return torch.randn(BATCH, WIDTH, dtype=torch.float64), torch.randn(BATCH, WIDTH, dtype=torch.float64)


def loss_fn(output, target):
    return ((output - target) ** 2).sum()


def main(csv_path, placement, num_stages, microbatches, out_dir):
    from torch.distributed.pipelining import PipelineStage
    from torch.distributed.pipelining.schedules import _PipelineScheduleRuntime

    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    dist.init_process_group("gloo")
    mine = [rank, 2 * world - 1 - rank] if placement == "v" else list(range(rank, num_stages, world))
    modules = {s: stage_module(s) for s in mine}
    def shape():  # static shapes: PyTorch's shape inference would need numpy
        return torch.zeros(BATCH // microbatches, WIDTH, dtype=torch.float64)

    # an example input that requires grad tells a stage to compute (and send back) its input grad
    stages = [PipelineStage(modules[s], s, num_stages, torch.device("cpu"),
                            input_args=shape().requires_grad_(s > 0), output_args=shape(),
                            output_grads=shape(), input_grads=shape()) for s in mine]
    schedule = _PipelineScheduleRuntime(stages, microbatches, loss_fn=loss_fn, scale_grads=True)
    schedule._load_csv(csv_path, format="compute_only")
    x, y = batch()
    losses = []
    args = (x,) if 0 in mine else ()
    target = y if num_stages - 1 in mine else None
    schedule.step(*args, target=target, losses=losses)
    grads = {s: [p.grad.clone() for p in modules[s].parameters()] for s in mine}
    torch.save({"grads": grads, "losses": [l.detach() for l in losses]}, os.path.join(out_dir, f"rank{rank}.pt"))
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5])
