"""schedc plans run on PyTorch's own runtime: export to CSV, load into `_PipelineScheduleRuntime`
(gloo, CPU, one process per rank), run a step, and compare losses and gradients with a
single-process run of the same model on the same microbatches (float64)."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from schedc.interop.torch_csv import torch_runtime_supported, write_torch_csv

from helpers import make_spec, run

torch = pytest.importorskip("torch")
supported, why = torch_runtime_supported()
pytestmark = [pytest.mark.torchrun, pytest.mark.skipif(not supported, reason=why)]

sys.path.insert(0, str(Path(__file__).parent))
import torch_runtime_worker as worker  # noqa: E402

MANUAL = ("rank 0: F0.0 F0.1 B0.0 F0.2 B0.1 F0.3 B0.2 B0.3\n"
          "rank 1: F1.0 B1.0 F1.1 B1.1 F1.2 B1.2 F1.3 B1.3\n")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_on_torch(csv_text, placement, num_stages, microbatches, ranks, tmp_path):
    csv_path = tmp_path / "plan.csv"
    csv_path.write_text(csv_text)
    env = dict(os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()), WORLD_SIZE=str(ranks))
    procs = [subprocess.Popen([sys.executable, worker.__file__, str(csv_path), placement, str(num_stages),
                               str(microbatches), str(tmp_path)], env=dict(env, RANK=str(r)),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for r in range(ranks)]
    outputs = [p.communicate(timeout=120)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), "\n".join(outputs)[-3000:]
    return [torch.load(tmp_path / f"rank{r}.pt") for r in range(ranks)]


def reference(num_stages, microbatches):
    modules = [worker.stage_module(s) for s in range(num_stages)]
    x, y = worker.batch()
    losses = []
    for xj, yj in zip(x.chunk(microbatches), y.chunk(microbatches)):
        out = xj
        for m in modules:
            out = m(out)
        loss = worker.loss_fn(out, yj)
        loss.backward()
        losses.append(loss.detach())
    grads = {s: [p.grad / microbatches for p in m.parameters()] for s, m in enumerate(modules)}
    return grads, losses


def check_against_reference(results, num_stages, microbatches):
    grads, losses = reference(num_stages, microbatches)
    seen = set()
    for result in results:
        for stage, stage_grads in result["grads"].items():
            seen.add(stage)
            for got, want in zip(stage_grads, grads[stage]):
                assert torch.allclose(got, want, rtol=1e-12, atol=1e-14), stage
        if result["losses"]:
            assert [float(l) for l in result["losses"]] == pytest.approx([float(l) for l in losses], rel=1e-12)
    assert seen == set(range(num_stages))


@pytest.mark.parametrize("family,placement", [("1f1b", "loop"), ("interleaved", "loop"), ("zbv", "v"),
                                              ("dualpipev", "v")])
def test_exported_family_runs_on_pytorchs_runtime(family, placement, tmp_path):
    compiled, _ = run(make_spec(family, 2, 4, FB=2.5))
    csv_text = write_torch_csv(compiled.spec, compiled.plan)
    results = run_on_torch(csv_text, placement, compiled.spec.num_stages, 4, 2, tmp_path)
    check_against_reference(results, compiled.spec.num_stages, 4)


def test_hand_written_order_runs_on_pytorchs_runtime(tmp_path):
    import schedc
    [spec] = schedc.parse(f"pipeline m {{ ranks = 2 microbatches = 4 order {{ {MANUAL} }} }}", "m.sched")
    compiled = schedc.compile(spec)
    results = run_on_torch(write_torch_csv(compiled.spec, compiled.plan), "loop", 2, 4, 2, tmp_path)
    check_against_reference(results, 2, 4)
