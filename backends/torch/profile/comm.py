"""Communication time of a stage's output for the profile: measured between two processes over a
process group (`measure_comm`), or computed from a bandwidth the user gives (`comm_from_bandwidth`).

`measure_comm` starts two processes (multiprocessing, spawn) that bounce a tensor of each size back
and forth, after a warm-up: the first posts it with `isend` (as the runner's SEND does) and waits
for it to come back, the second receives and returns it. Two figures per size (`Transfers`):
`comm`, half the median round trip (the one-way transfer time), and `send`, the median time the
`isend` call itself keeps the sending process busy (on gloo it writes the tensor into the socket
before it returns): time the sending rank cannot compute, which `costblock.charge_sends` charges
to the op that sends. On CPU that is the calling thread's CPU time over the call (the write is
made on it): a moment the OS gives its core to another process is not the send's (on a loaded
2-core machine the wall-clock median moved from 0.03 to 3 ms between two profiles). Transfers of
zero bytes cost 0. A bandwidth gives no send figure (0).
"""

from __future__ import annotations

import socket
import statistics
import time
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from .contention import start_helpers

ROUND_TRIPS, WARMUP = 20, 3


@dataclass(frozen=True)
class Transfers:
    """Milliseconds per transfer size: `comm` one way, `send` the sender's own time posting it."""

    comm: list[float]
    send: list[float]


def comm_from_bandwidth(sizes: list[int], gigabytes_per_second: float) -> list[float]:
    """Milliseconds to move each of `sizes` bytes at the given bandwidth."""
    return [size / (gigabytes_per_second * 1e9) * 1e3 for size in sizes]


def measure_comm(sizes: list[int], backend: str = "gloo", device: str = "cpu", timeout: float = 60) -> Transfers:
    """Milliseconds to send each of `sizes` bytes from one process to another over `backend`, and
    to post each send (NCCL: `device` is "cuda" and the two processes use GPUs 0 and 1)."""
    context = torch.multiprocessing.get_context("spawn")
    results = context.Queue()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    processes = [context.Process(target=_probe, args=(rank, port, sizes, backend, device, results), daemon=True)
                 for rank in range(2)]
    start_helpers(processes)
    try:
        found = results.get(timeout=timeout)
    finally:
        for process in processes:
            process.join(timeout=5)
            if process.is_alive():
                process.kill()
    if isinstance(found, str):
        raise RuntimeError(f"measuring communication failed: {found}")
    return Transfers([comm for comm, _send in found], [send for _comm, send in found])


def _probe(rank: int, port: int, sizes: list[int], backend: str, device: str, results) -> None:
    try:
        dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2,
                                timeout=timedelta(seconds=60))
        where = torch.device(f"cuda:{rank}" if device == "cuda" else "cpu")
        if where.type == "cuda":
            torch.cuda.set_device(where)
        figures = [_one_way_and_send_ms(size, rank, where) if size else (0.0, 0.0) for size in sizes]
        dist.destroy_process_group()
        if rank == 0:
            results.put(figures)
    except Exception as error:  # noqa: BLE001 - reported to the parent, which says what failed
        results.put(f"rank {rank}: {error}")


def _one_way_and_send_ms(size: int, rank: int, device: torch.device) -> tuple[float, float]:
    """(half the median round trip, the median `isend` call) in ms, on rank 0 (rank 1 echoes)."""
    tensor = torch.empty(max(size // 4, 1), dtype=torch.float32, device=device)
    peer = 1 - rank
    trips, posts = [], []
    clock = time.thread_time if device.type == "cpu" else time.perf_counter  # the post's own CPU time
    for i in range(WARMUP + ROUND_TRIPS):
        dist.barrier()
        start = time.perf_counter()
        if rank == 0:
            cpu = clock()
            work = dist.isend(tensor, peer)
            posted = clock() - cpu
            work.wait()
            dist.recv(tensor, peer)
        else:
            dist.recv(tensor, peer)
            dist.send(tensor, peer)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if i >= WARMUP:
            trips.append(time.perf_counter() - start)
            posts.append(posted if rank == 0 else 0.0)
    return statistics.median(trips) / 2 * 1e3, statistics.median(posts) * 1e3
