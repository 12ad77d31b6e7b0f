"""Execute one rank's compiled instruction list on a torch model.

Each rank runs its list in order, with the stage compute of `compute.py` (which `--profile` times):
- `F`: the stage's forward on the microbatch's input (the batch for stage 0, else the received or
  locally handed-over activation); the last stage applies the loss.
- `B`: the full backward (input and weight gradients) by `torch.autograd.backward`.
- `I` / `W`: the split backward through autograd alone, no custom autograd function asked of the
  user. With PyTorch's pipelining helpers (`stage_backward_input` / `stage_backward_weight`), `I`
  keeps the gradients at the ops that use parameters so `W` only does the local weight work;
  without them (`SPLIT_WITH_TORCH_HELPERS = False` or an older torch), `I` is
  `torch.autograd.grad(output, input, retain_graph=True)` and `W` is
  `torch.autograd.grad(output, params)`, which walks the stage's graph a second time.
- `OVERLAP(F, B)`: the stage module's `overlapped_forward_backward` hook when its class has one
  (DualPipe's contract, see `OverlapHook`); else `overlap_way`: "streams" (the CUDA default), the
  forward on a second stream while the backward runs on the current one, or "sequential" (the CPU
  default), the forward and then the backward.
- `SEND_*` posts an `isend`; `RECV_*` takes a received tensor, in the order the plan fixes, which
  both peers agree on (verified by the compiler). A sent tensor is kept until its transfer reports
  completion (NCCL) or the plan proves the peer has it (`sends_received_before`), then let go; a
  sent stage output gives its own reference to the storage back at once (`release_storage`),
  keeping only its place in the autograd graph. The first step's
  first transfer on each edge carries the tensor's shape and dtype; from then on every RECV also
  posts the `irecv`s of the next `lookahead` RECVs from the same peer, so data lands while the rank
  computes (posting them in plan order keeps each channel's order).
- `GRAD_SUM`: the two replicas of each stage (bidirectional pipelines) exchange and sum their
  gradients, so both hold the gradient of the whole batch.
Gradients accumulate in the modules' `.grad` (sum over microbatches); the optimizer is the user's.
"""

from __future__ import annotations

import copy
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Protocol

import torch
import torch.distributed as dist

from ...ir import Instr, OpKind, Plan
from ...lang.spec import PipelineSpec
from .compute import (Pair, Root, backward_input, backward_weight, full_backward, run_pair,
                      stage_forward)
from .transfers import META_SIZE, WIRE_DTYPES, release_storage, sends_received_before


class OverlapHook(Protocol):
    """The optional hook a stage module's class may define (modelled on DeepSeek's DualPipe):

        @classmethod
        def overlapped_forward_backward(cls, module0, inputs0, criterion0, labels0,
                                        module1, loss1, outputs1, output_grads1):
            ...  # run module0's forward and module1's backward together
            return outputs0, loss0

    `criterion0`/`labels0` are given when module0 is the last stage (`loss0` is then its loss,
    else None); `loss1` is given when module1 is the last stage (then `outputs1` and
    `output_grads1` are None). The hook must leave module1's parameter gradients accumulated and
    the input of module1's forward with its `.grad` set, as `torch.autograd.backward` would.
    `outputs1` was sent, so its storage may have been given back (`release_storage`): it keeps
    its shape and its place in the graph, not its values; use it as the root of the backward.
    """


@dataclass
class Record:
    """What really ran: one instruction's wall-clock start and end (seconds, this rank's clock)."""

    index: int
    instr: Instr
    start: float
    end: float


@dataclass
class _StepState:
    inputs: dict = field(default_factory=dict)  # (d, s, j) -> input tensor of F
    outputs: dict = field(default_factory=dict)  # (d, s, j) -> output waiting for SEND_F
    saved: dict = field(default_factory=dict)  # (d, s, j) -> (input, output or loss)
    grads: dict = field(default_factory=dict)  # (d, s, j) -> gradient of the stage's output
    input_grads: dict = field(default_factory=dict)  # (d, s, j) -> input gradient waiting for SEND_B
    pending_w: dict = field(default_factory=dict)  # (d, s, j) -> what W needs
    posted: dict = field(default_factory=dict)  # plan index of a RECV -> (work, buffer)
    upcoming: dict = field(default_factory=dict)  # peer -> plan indices of its RECVs not yet posted
    sends: dict = field(default_factory=dict)  # peer -> deque of [works, tensor], one per plan SEND
    released: dict = field(default_factory=dict)  # peer -> how many sends to it were let go
    losses: dict = field(default_factory=dict)  # global microbatch -> loss


class PipelineRunner:
    """Runs `plan`'s list for `rank`. `build_stages(num_stages)` returns every stage's module
    (deterministically: each rank calls it and keeps the stages it holds, so replicas start equal);
    `loss_fn(output, target)` is applied on the last stage. `free_sent_outputs`: give a sent stage
    output's storage back once sent (see `release_storage`); turn it off when a stage module keeps
    its own reference to the tensor it returns and reads it later. `comm_device`: where transfers
    live, the compute device by default (NCCL on CUDA); "cpu" stages CUDA tensors through host
    memory, for gloo (several ranks sharing one GPU, which NCCL refuses)."""

    def __init__(self, spec: PipelineSpec, plan: Plan, rank: int,
                 build_stages: Callable[[int], list[torch.nn.Module]],
                 loss_fn: Callable, group=None, device: torch.device | str = "cpu", lookahead: int = 2,
                 free_sent_outputs: bool = True, comm_device: torch.device | str | None = None):
        self.spec, self.plan, self.rank = spec, plan, rank
        self.row = plan.ranks[rank]
        self.loss_fn, self.group, self.device = loss_fn, group, torch.device(device)
        self.comm_device = torch.device(comm_device) if comm_device is not None else self.device
        built = build_stages(spec.num_stages)
        if len(built) != spec.num_stages:
            raise ValueError(f"build_stages({spec.num_stages}) returned {len(built)} modules")
        self.modules = {(d, s): (built[s] if d == 0 else copy.deepcopy(built[s])).to(self.device)
                        for d, s in spec.stages_of(rank)}
        self.meta: dict = {}  # edge key -> (shape, dtype), agreed at the first step
        self.records: list[Record] = []
        self.lookahead = lookahead
        self.free_sent_outputs = free_sent_outputs
        # overlapped pairs without a hook: "streams" (CUDA) or "sequential"; `--profile` says which pays
        self.overlap_way = "streams" if self.device.type == "cuda" else "sequential"
        self._side_stream = None  # where their forwards run on two streams
        self.synchronize_records = False  # CUDA: wait for the GPU after each instruction, so
        # `records` hold the GPU's times rather than the launch times (slows the step: for traces)
        self.received_proof = sends_received_before(plan, rank)
        self.current: tuple[str, float] | None = None  # what runs and since when (wall clock; watch.py)

    # ---- the step ---------------------------------------------------------------------------

    def step(self, inputs: list[torch.Tensor] | None, targets: list[torch.Tensor] | None) -> dict[int, torch.Tensor]:
        """One training step over all microbatches. `inputs`/`targets`: one tensor per global
        microbatch (needed on the ranks holding the first / last stage). Returns the losses this
        rank computed, by global microbatch."""
        state = _StepState()
        self.records = []
        self._inputs, self._targets = inputs, targets
        self._plan_receives(state)
        for index, instr in enumerate(self.row):
            self._index = index
            self.current = (str(instr), time.time())
            start = time.perf_counter()
            try:
                self._execute(instr, state)
            except Exception as exc:
                raise RuntimeError(f"rank {self.rank}, instruction {index} ({instr}): {exc}") from exc
            if self.synchronize_records and self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            self.records.append(Record(index, instr, start, time.perf_counter()))
        for peer, queue in state.sends.items():
            self._let_go(state, peer, proven=state.released.get(peer, 0) + len(queue))
        self.current = ("between steps", time.time())
        return state.losses

    def _global(self, d: int, j: int) -> int:
        return j + d * self.spec.microbatches_per_direction

    def _execute(self, instr: Instr, state: _StepState) -> None:
        kind = instr.kind
        if kind is OpKind.F:
            self._forward(instr, state)
        elif kind is OpKind.B:
            self._backward(instr, state, full=True)
        elif kind is OpKind.I:
            self._backward(instr, state, full=False)
        elif kind is OpKind.W:
            self._weight(instr, state)
        elif kind is OpKind.OVERLAP:
            self._overlap(instr, state)
        elif kind is OpKind.SEND_F:
            output = state.outputs.pop(_key(instr))
            self._send(state, output.detach(), instr.peer, ("F", instr.direction, instr.stage))
            if self.free_sent_outputs:
                release_storage(output)
        elif kind is OpKind.RECV_F:
            state.inputs[_key(instr)] = self._recv(state, instr.peer, ("F", instr.direction, instr.stage - 1))
        elif kind is OpKind.SEND_B:
            self._send(state, state.input_grads.pop(_key(instr)), instr.peer, ("B", instr.direction, instr.stage))
        elif kind is OpKind.RECV_B:
            state.grads[_key(instr)] = self._recv(state, instr.peer, ("B", instr.direction, instr.stage + 1))
        elif kind is OpKind.GRAD_SUM:
            self._grad_sum(instr.peer)

    def _stage_input(self, d: int, s: int, j: int, state: _StepState) -> torch.Tensor:
        if s == 0:
            return self._inputs[self._global(d, j)].to(self.device)
        return state.inputs.pop((d, s, j)).detach().requires_grad_(True)

    def _loss_and_target(self, d: int, s: int, j: int):
        if s != self.spec.num_stages - 1:
            return None, None
        return self.loss_fn, self._targets[self._global(d, j)].to(self.device)

    def _forward(self, op: Instr, state: _StepState) -> None:
        d, s, j = _key(op)
        x = self._stage_input(d, s, j, state)
        out, loss = stage_forward(self.modules[(d, s)], x, *self._loss_and_target(d, s, j))
        self._keep_forward(d, s, j, x, out, loss, state)

    def _keep_forward(self, d: int, s: int, j: int, x, out, loss, state: _StepState) -> None:
        """Save what the stage's backward needs; pass the output on (loss on the last stage)."""
        if loss is not None:
            state.losses[self._global(d, j)] = loss.detach()
            state.saved[(d, s, j)] = (x, loss)
            return
        state.saved[(d, s, j)] = (x, out)
        if self.spec.rank_of(d, s + 1) == self.rank:
            state.inputs[(d, s + 1, j)] = out  # local hand-over
        else:
            state.outputs[(d, s, j)] = out

    def _root(self, d: int, s: int, j: int, state: _StepState) -> Root:
        x, out = state.saved.pop((d, s, j))
        grad = None if s == self.spec.num_stages - 1 else state.grads.pop((d, s, j))
        return Root(x, out, grad, has_input=s > 0)

    def _backward(self, op: Instr, state: _StepState, full: bool) -> None:
        d, s, j = _key(op)
        root = self._root(d, s, j, state)
        if full:
            input_grad = full_backward(root)
        else:
            input_grad, state.pending_w[(d, s, j)] = backward_input(self.modules[(d, s)], root)
        self._hand_back(d, s, j, input_grad, state)

    def _weight(self, op: Instr, state: _StepState) -> None:
        d, s, j = _key(op)
        backward_weight(self.modules[(d, s)], state.pending_w.pop((d, s, j)))

    def _hand_back(self, d: int, s: int, j: int, input_grad, state: _StepState) -> None:
        if s == 0:
            return
        if self.spec.rank_of(d, s - 1) == self.rank:
            state.grads[(d, s - 1, j)] = input_grad  # local hand-over
        else:
            state.input_grads[(d, s, j)] = input_grad

    def _overlap(self, instr: Instr, state: _StepState) -> None:
        """OVERLAP(F, B or I): `run_pair` (the stage's hook, or `overlap_way`)."""
        forward, backward = instr.parts
        d0, s0, j0 = _key(forward)
        d1, s1, j1 = _key(backward)
        full = backward.kind is OpKind.B
        x0 = self._stage_input(d0, s0, j0, state)
        loss_fn0, target0 = self._loss_and_target(d0, s0, j0)
        pair = Pair(self.modules[(d0, s0)], x0, loss_fn0, target0, self.modules[(d1, s1)],
                    self._root(d1, s1, j1, state), full)
        if self.overlap_way == "streams" and self._side_stream is None:
            self._side_stream = torch.cuda.Stream(self.device)
        out0, loss0, input_grad, pending = run_pair(pair, self.overlap_way, self._side_stream)
        self._keep_forward(d0, s0, j0, x0, out0, loss0, state)
        if not full:
            state.pending_w[(d1, s1, j1)] = pending
        self._hand_back(d1, s1, j1, input_grad, state)

    # ---- transfers -------------------------------------------------------------------------

    def _send(self, state: _StepState, tensor: torch.Tensor, peer: int, edge) -> None:
        tensor = tensor.detach().to(self.comm_device).contiguous()
        works = []
        if edge not in self.meta:
            meta = torch.zeros(META_SIZE, dtype=torch.int64)
            meta[0], meta[1] = WIRE_DTYPES.index(tensor.dtype), tensor.dim()
            meta[2:2 + tensor.dim()] = torch.tensor(tensor.shape, dtype=torch.int64)
            meta = meta.to(self.comm_device)  # NCCL sends device tensors only
            works.append(dist.isend(meta, peer, group=self.group))
            self.meta[edge] = (tuple(tensor.shape), tensor.dtype)
        elif self.meta[edge] != (tuple(tensor.shape), tensor.dtype):
            raise RuntimeError(f"{edge[0]} transfer of stage {edge[2]} changed shape or dtype: "
                               f"{tuple(tensor.shape)} {tensor.dtype}, agreed {self.meta[edge]}")
        works.append(dist.isend(tensor, peer, group=self.group))
        queue = state.sends.setdefault(peer, deque())
        queue.append((works, tensor))
        self._let_go(state, peer)

    def _let_go(self, state: _StepState, peer: int, proven: int = 0) -> None:
        """Wait for and drop the step's sends to `peer` that are done: the first `proven` (the
        plan proves the peer has them, or the step is over) and those after them that report
        completion. NCCL reports it from the transfer's CUDA event; gloo's sends never report it
        before `wait`, so on CPU only the plan's proof (`sends_received_before`) lets them go
        before the step ends. Either way the waits return at once."""
        queue = state.sends.get(peer)
        released = state.released.get(peer, 0)
        while queue and (released < proven or all(work.is_completed() for work in queue[0][0])):
            works, _tensor = queue.popleft()
            for work in works:
                work.wait()
            released += 1
        state.released[peer] = released

    @staticmethod
    def _edge_of(instr: Instr):
        if instr.kind is OpKind.RECV_F:
            return ("F", instr.direction, instr.stage - 1)
        return ("B", instr.direction, instr.stage + 1)

    def _plan_receives(self, state: _StepState) -> None:
        """Once every edge's shape is known (after the first step), queue each peer's RECVs in
        plan order and post the first `lookahead` of them."""
        receives = [(i, x) for i, x in enumerate(self.row) if x.kind in (OpKind.RECV_F, OpKind.RECV_B)]
        if self.lookahead <= 0 or any(self._edge_of(x) not in self.meta for _, x in receives):
            return
        for i, x in receives:
            state.upcoming.setdefault(x.peer, []).append(i)
        for peer in state.upcoming:
            self._post_next(state, peer, self.lookahead)

    def _post_next(self, state: _StepState, peer: int, count: int) -> None:
        queue = state.upcoming.get(peer, [])
        while queue and count > 0:
            index = queue.pop(0)
            shape, dtype = self.meta[self._edge_of(self.row[index])]
            buffer = torch.empty(shape, dtype=dtype, device=self.comm_device)
            state.posted[index] = (dist.irecv(buffer, peer, group=self.group), buffer)
            count -= 1

    def _recv(self, state: _StepState, peer: int, edge) -> torch.Tensor:
        buffer = self._take(state, peer, edge).to(self.device)
        self._let_go(state, peer, proven=self.received_proof[self._index])
        return buffer

    def _take(self, state: _StepState, peer: int, edge) -> torch.Tensor:
        if self._index in state.posted:  # posted ahead: wait for it, then post the next one
            work, buffer = state.posted.pop(self._index)
            work.wait()
            self._post_next(state, peer, 1)
            return buffer
        if edge not in self.meta:
            meta = torch.zeros(META_SIZE, dtype=torch.int64, device=self.comm_device)
            dist.recv(meta, peer, group=self.group)
            meta = meta.cpu()
            ndim = int(meta[1])
            self.meta[edge] = (tuple(int(x) for x in meta[2:2 + ndim]), WIRE_DTYPES[int(meta[0])])
        shape, dtype = self.meta[edge]
        buffer = torch.empty(shape, dtype=dtype, device=self.comm_device)
        dist.recv(buffer, peer, group=self.group)
        return buffer

    def _grad_sum(self, peer: int) -> None:
        """Exchange and sum the gradients of each stage's replicas with the mirror rank, stage by
        stage in stage order (the mirror holds the same stages in the other direction)."""
        for d, s in sorted(self.modules, key=lambda k: k[1]):
            for p in self.modules[(d, s)].parameters():
                grad = p.grad.detach() if p.grad is not None else torch.zeros_like(p)
                mine = grad.to(self.comm_device, copy=True)
                theirs = torch.empty_like(mine)
                work = dist.isend(mine, peer, group=self.group)
                dist.recv(theirs, peer, group=self.group)
                work.wait()
                p.grad = (mine + theirs).to(self.device)


def _key(instr: Instr) -> tuple[int, int, int]:
    return instr.direction, instr.stage, instr.microbatch
