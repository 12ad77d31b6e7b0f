"""Chunk parts: the contract a stage module follows so the runner can interleave the parts of two
microbatches (DualPipe's overlap), and the executor that runs them.

The contract. A module declares its parts with `chunk_parts()` -> list of `Part`; a
`torch.nn.Sequential` whose children declare parts (a plain child counts as one compute part)
has theirs concatenated (`parts_of`). Parts pass a *state* along, a dict of named values: "x" is
the stage's input on entry and its output on exit.
- A compute part, `Part(name, compute=fn)`: `fn(state) -> state`, with autograd as usual.
- A communication part, `Part(name, exchange=Exchange(send, receive, splits=..., group=...))`: an
  all-to-all over `group` of the tensor `state[send]` (rows cut by `state[splits][0]`, received
  rows by `state[splits][1]`) into `state[receive]`; its backward is the reverse all-to-all of the
  gradient. When the receiving side does not know its rows yet (a dispatch), give
  `counts=KEY` instead of `splits`: `state[KEY]` is an int64 tensor [members, c] (row i: what goes
  to member i, c counts each, e.g. tokens per expert of member i; the rows of `send` grouped by
  member); the part first exchanges the counts (in flight too), puts what arrived in
  `state[receive + "_counts"]` ([members, c], row i from member i) and then the rows.
  With `group` None (one member) it hands the tensor over unchanged.
A module's `forward` should itself be `run_parts(self.chunk_parts(), x)`, so a single-process run
and an expert-parallel one execute one code path. With a group, `run_parts` runs under
`torch.no_grad()` only (evaluation): one autograd backward through several all-to-alls could
issue them in a different order on different members, so training goes through `ChunkRun`.

The executor. `ChunkRun` runs one microbatch's parts as a generator that yields a `Flight` each
time it has started an all-to-all and needs its result; the caller waits for it (`sequential`) or
first runs the other chunk's parts (`interleave`, DualPipe's pair: one chunk's all-to-all in flight
while the other computes, the forward leading, as in the V3 report's Figure 4). Part boundaries
are cut in the autograd graph (each part's inputs become fresh leaves), so the backward runs part
by part too, in reverse, each all-to-all of it in flight while the other chunk computes.
Invariant: a chunk's values and gradients are those of `module(x)` and its backward; every member
of a group issues the same all-to-alls in the same order (the order depends only on the parts).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Iterator

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Exchange:
    """An all-to-all of `state[send]` into `state[receive]` over `group` (None: identity), rows
    split by `state[splits]` = (rows sent to each member, rows received from each member), or by
    counts exchanged first (`state[counts]`, see the module docstring)."""

    send: str
    receive: str
    splits: str | None = None
    counts: str | None = None
    group: object = None

    def __post_init__(self):
        if (self.splits is None) == (self.counts is None):
            raise ValueError(f"exchange {self.send!r} -> {self.receive!r}: give exactly one of splits= and counts=")


@dataclass(frozen=True)
class Part:
    """One part of a chunk: a compute function of the state, or an `Exchange`."""

    name: str
    compute: Callable[[dict], dict] | None = None
    exchange: Exchange | None = None

    def __post_init__(self):
        if (self.compute is None) == (self.exchange is None):
            raise ValueError(f"part {self.name!r}: give exactly one of compute= and exchange=")


def parts_of(module: torch.nn.Module) -> list[Part] | None:
    """The module's parts (its `chunk_parts()`, or a Sequential's children's), or None when it does
    not follow the contract (then it runs as one forward and one backward)."""
    if hasattr(module, "chunk_parts"):
        return list(module.chunk_parts())
    if isinstance(module, torch.nn.Sequential) and any(hasattr(c, "chunk_parts") for c in module):
        out: list[Part] = []
        for child in module:
            out += list(child.chunk_parts()) if hasattr(child, "chunk_parts") else [_whole(child)]
        return out
    return None


def _whole(module: torch.nn.Module) -> Part:
    return Part(type(module).__name__, compute=lambda state: {**state, "x": module(state["x"])})


def run_parts(parts: list[Part], x: torch.Tensor) -> torch.Tensor:
    """The parts in order on `x` with autograd as usual (a module's forward): the state's "x"."""
    state = {"x": x}
    for part in parts:
        if part.compute is not None:
            state = part.compute(state)
            continue
        ex = part.exchange
        if ex.group is not None and torch.is_grad_enabled():
            raise RuntimeError(f"part {part.name!r}: an expert-parallel module trains through schedc's chunk "
                               "executor (ChunkRun, as PipelineRunner does); call it directly only under "
                               "torch.no_grad()")
        arrived = None
        if ex.counts is not None:
            arrived = _counts_back(all_to_all(state[ex.counts].reshape(-1), *_equal(state[ex.counts]), ex.group),
                                   state[ex.counts])
        send, receive = _splits(state, ex, arrived)
        received = all_to_all(state[ex.send], send, receive, ex.group)
        state = _exchanged(state, ex, received, arrived)
    return state["x"]


def _equal(counts: torch.Tensor) -> tuple[list[int], list[int]]:
    """Splits of a [members, c] counts tensor sent whole: c to and from each member."""
    return [counts.shape[1]] * counts.shape[0], [counts.shape[1]] * counts.shape[0]


def _counts_back(flat: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return flat.to(like.device).view_as(like)


def _splits(state: dict, exchange: Exchange, arrived) -> tuple[list[int], list[int]]:
    """(rows sent to each member, rows received from each member)."""
    if exchange.splits is not None:
        return state[exchange.splits]
    return state[exchange.counts].sum(1).tolist(), arrived.sum(1).tolist()


def _exchanged(state: dict, exchange: Exchange, received, arrived=None) -> dict:
    out = {k: v for k, v in state.items() if k != exchange.send}
    out[exchange.receive] = received
    if arrived is not None:
        out[exchange.receive + "_counts"] = arrived
    return out


# ---- the all-to-all -------------------------------------------------------------------------------

def start_all_to_all(tensor: torch.Tensor, send: list[int], receive: list[int], group):
    """Post the all-to-all of `tensor`'s rows (`send[i]` rows to member i, `receive[i]` from it):
    (output buffer, work, input buffer). Gloo moves CPU tensors only: a CUDA tensor goes through host
    memory. The caller keeps the input buffer until the work is done: the work does not, and the
    allocator would hand its memory out again while the collective still reads it."""
    wire = tensor.detach().contiguous()
    if wire.is_cuda and dist.get_backend(group) == "gloo":
        wire = wire.cpu()
    out = wire.new_empty((sum(receive), *wire.shape[1:]))
    work = dist.all_to_all_single(out, wire, list(receive), list(send), group=group, async_op=True)
    return out, work, wire


def all_to_all(tensor: torch.Tensor, send: list[int], receive: list[int], group) -> torch.Tensor:
    """The all-to-all, waited for (identity when `group` is None)."""
    if group is None:
        return tensor
    out, work, wire = start_all_to_all(tensor, send, receive, group)
    work.wait()
    del wire
    return out.to(tensor.device)


# ---- running a chunk by parts --------------------------------------------------------------------

@dataclass
class Flight:
    """An all-to-all in flight: which part, of which chunk, posted when; `finish()` waits for it."""

    label: str
    work: object
    out: torch.Tensor
    sent: torch.Tensor  # held until the work is done
    device: torch.device
    posted: float = field(default_factory=time.perf_counter)
    result: torch.Tensor | None = None
    hand_over: bool = True  # False: a short exchange (counts) the chunk waits for before the other runs

    def finish(self) -> torch.Tensor:
        if self.result is None:
            try:
                self.work.wait()
            except Exception as error:  # a peer died or timed out: say which all-to-all
                raise RuntimeError(f"{self.label}: {str(error).splitlines()[0]}") from error
            self.result, self.sent = self.out.to(self.device), None
        return self.result


def _fresh_leaves(state: dict) -> tuple[dict, dict]:
    """The state with every tensor that needs a gradient replaced by a fresh leaf: (state, leaves)."""
    leaves = {k: v.detach().requires_grad_(True) for k, v in state.items()
              if isinstance(v, torch.Tensor) and v.requires_grad}
    return {**state, **leaves}, leaves


class ChunkRun:
    """One microbatch's forward by parts and, later, its backward. `label` names it in errors
    ("stage 2 microbatch 5"). After `forward()`: `out` (the stage output) and `loss` (with
    `loss_fn`). The backward starts from `grad` of `out` (None when the chunk ends in its loss)."""

    def __init__(self, parts: list[Part], x: torch.Tensor, label: str, loss_fn=None, target=None,
                 log: list | None = None):
        self.parts, self.x, self.label = parts, x, label
        self.loss_fn, self.target = loss_fn, target
        self.records: list[tuple] = []
        self.out: torch.Tensor | None = None
        self.loss: torch.Tensor | None = None
        self.pending_weights: list[tuple] = []
        self.flights = [] if log is None else log  # (label, posted, finished) of its all-to-alls
        self.timings: list | None = None  # while a pass runs alone: (section, part, seconds) of each part

    def forward(self, timings: list | None = None) -> Iterator[Flight]:
        """The forward, part by part; `timings` (given when it runs alone, not interleaved): where
        each part's (section, name, seconds) go."""
        self.timings = timings
        state = {"x": self.x}
        for part in self.parts:
            if part.compute is not None:
                leafy, leaves = _fresh_leaves(state)
                start = time.perf_counter()
                state = part.compute(leafy)
                self._time("F", part.name, start)
                self.records.append(("compute", leaves, state, part.name))
                continue
            ex = part.exchange
            sent, arrived, start = state[ex.send], None, time.perf_counter()
            if ex.counts is not None:
                counts = state[ex.counts]
                flat = yield from self._exchange(counts.reshape(-1), *_equal(counts), ex.group,
                                                 f"{part.name} counts (forward)", hand_over=False)
                arrived = _counts_back(flat, counts)
            send, receive = _splits(state, ex, arrived)
            received = yield from self._exchange(sent, send, receive, ex.group, f"{part.name} (forward)")
            if received.is_floating_point():  # gradients come back from the other members, even when
                received = received.requires_grad_(True)  # this one sent a constant (no rows, say)
            self._time("F", part.name, start)
            self.records.append(("exchange", ex, sent, received, (send, receive), part.name))
            state = _exchanged(state, ex, received, arrived)
        self.out = state["x"]
        if self.loss_fn is not None:
            leaf = self.out.detach().requires_grad_(True)
            self.loss = self.loss_fn(leaf, self.target)
            self.records.append(("compute", {"x": leaf}, {"loss": self.loss}, "loss"))

    def _exchange(self, tensor, send, receive, group, what: str, hand_over: bool = True):
        if group is None:
            return tensor.detach()
        out, work, wire = start_all_to_all(tensor, send, receive, group)
        flight = Flight(f"{what} of {self.label}", work, out, wire, tensor.device, hand_over=hand_over)
        yield flight
        result = flight.finish()
        self.flights.append((flight.label, flight.posted, time.perf_counter()))
        return result

    def backward(self, grad: torch.Tensor | None, weights: bool = True, params=(),
                 timings: list | None = None) -> Iterator[Flight]:
        """The backward part by part, in reverse. `weights`: the parameters' gradients too (B);
        else only the input gradients (I), keeping what `weight()` needs. Sets `x.grad`."""
        self.timings = timings
        grads = {"loss": torch.ones_like(self.loss)} if self.loss is not None else {"x": grad}
        params = [p for p in params if p.requires_grad]
        for record in reversed(self.records):
            start = time.perf_counter()
            if record[0] == "exchange":
                _, ex, sent, received, (send, receive), name = record
                g = grads.pop(ex.receive, None)
                g = torch.zeros_like(received) if g is None else g
                if ex.group is not None:
                    g = yield from self._exchange(g, receive, send, ex.group, f"{name} (backward)")
                if sent.requires_grad:
                    grads[ex.send] = g
                self._time("B", name, start)
                continue
            _, leaves, outputs, name = record
            roots = [(outputs[k], g) for k, g in grads.items()
                     if isinstance(outputs.get(k), torch.Tensor) and outputs[k].requires_grad]
            if roots:
                tensors, seeds = zip(*roots)
                if weights:
                    torch.autograd.backward(list(tensors), list(seeds))
                    grads = {k: leaf.grad for k, leaf in leaves.items() if leaf.grad is not None}
                else:
                    names = list(leaves)
                    got = torch.autograd.grad(list(tensors), [leaves[n] for n in names], list(seeds),
                                              retain_graph=bool(params), allow_unused=True) if names else ()
                    grads = {n: g for n, g in zip(names, got) if g is not None}
                    if params:
                        self.pending_weights.append((tensors, seeds, name))
            else:
                grads = {}
            self._time("B", name, start)
        if self.x.requires_grad and "x" in grads:
            self.x.grad = grads["x"] if self.x.grad is None else self.x.grad + grads["x"]
        self.records = []

    def weight(self, params) -> None:
        """W after an input-only backward: the parameters' gradients, accumulated into `.grad`."""
        params = [p for p in params if p.requires_grad]
        for tensors, seeds, name in self.pending_weights:
            start = time.perf_counter()
            got = torch.autograd.grad(list(tensors), params, list(seeds), allow_unused=True)
            for p, g in zip(params, got):
                if g is not None:
                    p.grad = g if p.grad is None else p.grad + g
            self._time("W", name, start)
        self.pending_weights = []

    def _time(self, section: str, name: str, start: float) -> None:
        if self.timings is not None:
            self.timings.append((section, name, time.perf_counter() - start))


def sequential(steps: Iterator[Flight]) -> float:
    """Run a chunk's forward or backward alone, waiting for each all-to-all at once. Returns the
    seconds spent waiting (communication no compute hid)."""
    waited = 0.0
    for flight in steps:
        start = time.perf_counter()
        flight.finish()
        waited += time.perf_counter() - start
    return waited


def interleave(first: Iterator[Flight], second: Iterator[Flight]) -> float:
    """Run two chunks' parts ping-pong: `first` until it posts an all-to-all, then `second` until it
    posts one, then `first` again once its all-to-all is done, and so on; a chunk that is done
    leaves the other to run alone. A short exchange that does not hand over (a dispatch's counts,
    which its rows wait for) is waited for at once, so each hand-over puts a whole compute part of
    the other chunk under an all-to-all. The order depends only on the parts, never on timing, so
    every member of a group posts the same all-to-alls in the same order. Returns the seconds
    spent waiting."""
    chunks, flights, done = [first, second], [None, None], [False, False]
    waited, turn = 0.0, 0
    while not all(done):
        if not done[turn]:
            while True:
                if flights[turn] is not None:
                    start = time.perf_counter()
                    flights[turn].finish()
                    waited += time.perf_counter() - start
                try:
                    flights[turn] = next(chunks[turn])
                except StopIteration:
                    done[turn], flights[turn] = True, None
                if done[turn] or flights[turn].hand_over:
                    break
        turn = 1 - turn
    return waited
