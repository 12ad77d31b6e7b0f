"""`schedc run --memory`: the activation memory a rank really holds, counted from what autograd
saves, beside the simulator's peak (docs/backend.md).

Every tensor a stage's forward saves for its backward passes through `saved_tensors_hooks`; the
tally adds its storage's bytes once (storages shared by several saved tensors count once;
parameters not at all) and takes them off when autograd lets the last of them go (after the
backward, or the weight gradient, that needs them). A forward run without autograd (its stage
recomputes: R rebuilds the graph) holds only its input, which the runner reports with
`hold_input`. A stage's unit is the bytes one full forward of it saved, which stands for the
file's `activation` of that stage, so the peak reads in the simulator's units.

Invariant: the tally is the sum of the live storages' bytes; with every forward's graph gone it is 0.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch


class _Held:
    """A saved tensor, counted while autograd holds it."""

    __slots__ = ("tensor", "tally", "ptr")

    def __init__(self, tensor: torch.Tensor, tally: "ActivationTally", ptr: int):
        self.tensor, self.tally, self.ptr = tensor, tally, ptr

    def __del__(self):
        self.tally._drop(self.ptr)


class ActivationTally:
    """Bytes of activations held, by storage; `peak` in stage activations once each stage's unit is
    known (`units`, bytes per stage: its largest full forward)."""

    def __init__(self, parameters, activations=None):
        self.activations = activations  # per stage: the file's activation (default 1 each)
        self.parameter_storages = {p.untyped_storage().data_ptr() for p in parameters}
        self.live: dict[int, list] = {}  # storage -> [references, bytes, stage]
        self.inputs: dict = {}  # key of a forward without autograd -> (bytes, stage)
        self.units: dict[int, int] = {}
        self.held = 0.0  # in units (stages with no unit yet count 0)
        self.peak = 0.0
        self.stage = None
        self.saved_now = 0
        self.step_peaks: list[float] = []  # each finished step's peak

    @contextmanager
    def saving(self, stage: int, full: bool = True):
        """Count what the forward inside saves, as stage `stage`; `full`: a full forward (its bytes
        give the stage's unit)."""
        self.stage, self.saved_now = stage, 0
        with torch.autograd.graph.saved_tensors_hooks(self._pack, self._unpack):
            yield
        if full and self.saved_now:
            self.units[stage] = max(self.units.get(stage, 0), self.saved_now)

    def _pack(self, tensor: torch.Tensor):
        storage = tensor.untyped_storage()
        ptr = storage.data_ptr()
        if ptr in self.parameter_storages or storage.nbytes() == 0:
            return tensor
        entry = self.live.get(ptr)
        if entry is None:
            entry = self.live[ptr] = [0, storage.nbytes(), self.stage]
            self.saved_now += storage.nbytes()
            self._add(entry[1], entry[2])
        entry[0] += 1
        # detached: a saved output holding its own grad_fn would be a cycle autograd never frees
        return _Held(tensor.detach(), self, ptr)

    @staticmethod
    def _unpack(held):
        return held.tensor if isinstance(held, _Held) else held

    def _drop(self, ptr: int) -> None:
        entry = self.live.get(ptr)
        if entry is None:
            return
        entry[0] -= 1
        if entry[0] == 0:
            del self.live[ptr]
            self._add(-entry[1], entry[2])

    def _add(self, nbytes: int, stage: int) -> None:
        unit = self.units.get(stage)
        if unit:
            self.held += nbytes / unit * (self.activations[stage] if self.activations else 1.0)
            self.peak = max(self.peak, self.held)

    def hold_input(self, key, stage: int, tensor: torch.Tensor) -> None:
        """The input a forward without autograd keeps for its R."""
        nbytes = tensor.untyped_storage().nbytes()
        self.inputs[key] = (nbytes, stage)
        self._add(nbytes, stage)

    def release_input(self, key) -> None:
        nbytes, stage = self.inputs.pop(key, (0, 0))
        self._add(-nbytes, stage)

    def start_step(self) -> None:
        """Start counting a step's peak (units stay): the first step measures the units, later
        steps the peak."""
        self.step_peaks.append(self.peak)
        self.held = 0.0
        for _refs, nbytes, stage in self.live.values():
            self._add(nbytes, stage)
        self.peak = self.held

    def measured_peak(self) -> float:
        """The largest peak of the steps after the first (`step_peaks[0]` is before any step)."""
        return max(self.step_peaks[2:] + [self.peak])


def report_memory(tally: ActivationTally, compiled, place_, steps: int, device, process: int, world: int) -> None:
    """Process 0 prints each process's measured peak beside its rank's simulated peak."""
    import torch.distributed as dist

    from ....simulate import simulate

    mine = torch.tensor([tally.measured_peak()], dtype=torch.float64, device=device)
    everyone = [torch.zeros_like(mine) for _ in range(world)]
    dist.all_gather(everyone, mine)
    if process != 0:
        return
    if steps < 2:
        print("--memory: run --steps 2 or more (the first step measures each stage's unit)", flush=True)
        return
    timeline = simulate(compiled.spec, compiled.dag, compiled.plan)
    print("activation memory per rank (the file's activation units; measured: the largest over the steps "
          "after the first of what autograd saved, counted by storage):", flush=True)
    for p, peak in enumerate(everyone):
        rank = p // place_.size
        simulated = timeline.ranks[rank].peak_activations
        member = f" EP member {p % place_.size}" if place_.size > 1 else ""
        ratio = f"{peak.item() / simulated:.2f}" if simulated else "-"
        print(f"  rank {rank}{member}: measured {peak.item():.3g}, simulated {simulated:.3g} "
              f"(measured / simulated {ratio})", flush=True)
