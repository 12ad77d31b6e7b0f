"""Profiling under a run's contention. The ranks of one host compute at the same time, and on a CPU
they slow each other down (shared cores, caches and memory bandwidth: on the 2-core machine these
tools were built on, one process's matmuls ran 1.5x slower while a second process computed). A
profile timed alone would predict a faster step than the ranks run. So on CPU, `--profile` times
the stages while `count` companion processes (the host's other ranks) compute the model's forward
and backward in a loop, one thread each, as torchrun gives each rank.
"""

from __future__ import annotations

import contextlib
import signal

import torch

from ..model_file import load_model


@contextlib.contextmanager
def companions(model_path: str, num_stages: int, dtype_name: str, count: int, timeout: float = 120):
    """Run the body while `count` processes keep computing the model; none when `count` <= 0."""
    if count <= 0:
        yield
        return
    context = torch.multiprocessing.get_context("spawn")
    stop, ready = context.Event(), context.Queue()
    processes = [context.Process(target=_compute, args=(model_path, num_stages, dtype_name, stop, ready),
                                 daemon=True) for _ in range(count)]
    start_helpers(processes)
    try:
        for _ in processes:
            ready.get(timeout=timeout)  # each has loaded the model and warmed up
        yield
    finally:
        stop.set()
        for process in processes:
            process.join(timeout=10)
            if process.is_alive():
                process.kill()


def start_helpers(processes) -> None:
    """Start the profile's helper processes (companions, the comm probe, EP members) with Ctrl-C
    ignored in them: the terminal's interrupt reaches every process of the group, and a helper
    still importing would print a KeyboardInterrupt traceback of its own. The profile stops its
    helpers itself (each caller's `finally`), and they are daemons, so they end with it."""
    try:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # inherited through spawn's exec
    except ValueError:  # not the main thread: no handler to swap
        previous = None
    try:
        for process in processes:
            process.start()
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


def _compute(model_path: str, num_stages: int, dtype_name: str, stop, ready) -> None:
    torch.set_num_threads(1)
    dtype = getattr(torch, dtype_name)
    model = load_model(model_path)
    stages = [m.to(dtype) for m in model.build_stages(num_stages)]
    inputs, targets = model.make_batch(1)
    x, y = inputs[0].to(dtype), targets[0].to(dtype)

    def one_step():
        out = x
        for stage in stages:
            out = stage(out)
        model.loss_fn(out, y).backward()

    one_step()
    ready.put(True)
    while not stop.is_set():
        one_step()
