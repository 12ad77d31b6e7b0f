"""Communication time of a stage's output for the profile: measured between two processes over a
process group (`measure_comm`), or computed from a bandwidth the user gives (`comm_from_bandwidth`).

`measure_comm` starts two processes (multiprocessing, spawn) that bounce a tensor of each size back
and forth (`send`/`recv`, as the runner's transfers are); a figure is half the median round trip,
after a warm-up. Transfers of zero bytes (the last stage sends nothing forward) cost 0.
"""

from __future__ import annotations

import socket
import statistics
import time
from datetime import timedelta

import torch
import torch.distributed as dist

ROUND_TRIPS, WARMUP = 20, 3


def comm_from_bandwidth(sizes: list[int], gigabytes_per_second: float) -> list[float]:
    """Milliseconds to move each of `sizes` bytes at the given bandwidth."""
    return [size / (gigabytes_per_second * 1e9) * 1e3 for size in sizes]


def measure_comm(sizes: list[int], backend: str = "gloo", device: str = "cpu", timeout: float = 60) -> list[float]:
    """Milliseconds to send each of `sizes` bytes from one process to another over `backend`
    (NCCL: `device` is "cuda" and the two processes use GPUs 0 and 1)."""
    context = torch.multiprocessing.get_context("spawn")
    results = context.Queue()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    processes = [context.Process(target=_probe, args=(rank, port, sizes, backend, device, results), daemon=True)
                 for rank in range(2)]
    for process in processes:
        process.start()
    try:
        found = results.get(timeout=timeout)
    finally:
        for process in processes:
            process.join(timeout=5)
            if process.is_alive():
                process.kill()
    if isinstance(found, str):
        raise RuntimeError(f"measuring communication failed: {found}")
    return found


def _probe(rank: int, port: int, sizes: list[int], backend: str, device: str, results) -> None:
    try:
        dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2,
                                timeout=timedelta(seconds=60))
        where = torch.device(f"cuda:{rank}" if device == "cuda" else "cpu")
        if where.type == "cuda":
            torch.cuda.set_device(where)
        figures = [_one_way_ms(size, rank, where) if size else 0.0 for size in sizes]
        dist.destroy_process_group()
        if rank == 0:
            results.put(figures)
    except Exception as error:  # noqa: BLE001 - reported to the parent, which says what failed
        results.put(f"rank {rank}: {error}")


def _one_way_ms(size: int, rank: int, device: torch.device) -> float:
    tensor = torch.empty(max(size // 4, 1), dtype=torch.float32, device=device)
    peer = 1 - rank
    times = []
    for i in range(WARMUP + ROUND_TRIPS):
        dist.barrier()
        start = time.perf_counter()
        if rank == 0:
            dist.send(tensor, peer)
            dist.recv(tensor, peer)
        else:
            dist.recv(tensor, peer)
            dist.send(tensor, peer)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if i >= WARMUP:
            times.append(time.perf_counter() - start)
    return statistics.median(times) / 2 * 1e3
