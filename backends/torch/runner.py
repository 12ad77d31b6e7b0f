"""Execute one rank's compiled instruction list on a torch model.

Each rank runs its list in order, with the stage compute of `compute.py` (which `--profile` times):
- `F`: the stage's forward on the microbatch's input (the batch for stage 0, else the received or
  locally handed-over activation); the last stage applies the loss.
- `B`: the full backward (input and weight gradients) by `torch.autograd.backward`.
- `I` / `W`: the split backward through autograd alone (compute.py: PyTorch's pipelining helpers
  when present, so W does only the local weight work), no custom autograd function asked of the user.
- `R` (recompute): the stage's F ran under `torch.no_grad()`, keeping only its input; R runs the
  forward again with autograd, right before the backward it feeds (the whole stage, whichever
  option the plan chose: the option's `keeps` is the model's estimate, the run drops everything).
- `OVERLAP(F, B)`: when both stages declare chunk parts (expert_parallel/parts.py) and
  `overlap_way` is "chunks" (the default then), the two chunks' parts interleaved so one
  microbatch's all-to-all is in flight while the other computes (DeepSeek's order); else the
  stage module's `overlapped_forward_backward` hook when its class has one (DualPipe's contract,
  see compute.OverlapHook); else "streams" (the CUDA default), the forward on a second stream while the
  backward runs on the current one, or "sequential" (the CPU default), the forward and then the
  backward. A stage with chunk parts runs F, B, I and W part by part too, each all-to-all waited
  for at once; the time the compute lane waited on all-to-alls is each record's `waited`.
- Expert parallelism (`experts`, expert_parallel/groups.py): this process is one member of its
  pipeline rank's EP group; its stages keep their share of the experts, transfers go to the same
  member of the peer rank's group, and after the step the dense gradients are summed over the group.
- `SEND_*` posts an `isend`, kept until it reports completion (NCCL) or the plan proves the peer
  has it (`sends_received_before`); a sent stage output gives its storage back at once
  (`release_storage`). `RECV_*` takes a received tensor in the plan's order (both peers agree: the
  compiler verified it); the first step's first transfer on an edge carries shape and dtype, later
  every RECV posts the `irecv`s of the next `lookahead` RECVs from that peer (in plan order).
- `GRAD_SUM`: the two replicas of each stage (bidirectional pipelines) sum their gradients.
- `--memory` (`tally`, profile/activation_memory.py): the activations autograd saves, counted.
Gradients accumulate in the modules' `.grad` (sum over microbatches); the optimizer is the user's.
"""

from __future__ import annotations

import contextlib
import copy
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.distributed as dist

from ...ir import Instr, OpKind, Plan
from ...lang.spec import PipelineSpec
from .compute import (Pair, Root, backward_input, backward_weight, full_backward, run_pair,
                      stage_forward)
from .expert_parallel import (ChunkRun, ExpertParallel, interleave, parts_of, sequential, shard_experts,
                              sync_gradients)
from .transfers import (META_SIZE, read_shape_message, release_storage, sends_received_before, shape_message,
                        sum_with_mirror)


@dataclass
class Record:
    """What really ran: one instruction's wall-clock start and end (seconds, this rank's clock)."""

    index: int
    instr: Instr
    start: float
    end: float
    waited: float = 0.0  # seconds the compute lane waited on all-to-alls inside it


@dataclass
class _StepState:
    inputs: dict = field(default_factory=dict)  # (d, s, j) -> input tensor of F
    outputs: dict = field(default_factory=dict)  # (d, s, j) -> output waiting for SEND_F
    saved: dict = field(default_factory=dict)  # (d, s, j) -> (input, output or loss)
    grads: dict = field(default_factory=dict)  # (d, s, j) -> gradient of the stage's output
    input_grads: dict = field(default_factory=dict)  # (d, s, j) -> input gradient waiting for SEND_B
    pending_w: dict = field(default_factory=dict)  # (d, s, j) -> what W needs
    chunks: dict = field(default_factory=dict)  # (d, s, j) -> its forward's ChunkRun (chunk parts)
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
    memory, for gloo (several ranks sharing one GPU, which NCCL refuses). `experts`: this process's
    place in an expert-parallel run (default: no EP group)."""

    def __init__(self, spec: PipelineSpec, plan: Plan, rank: int,
                 build_stages: Callable[[int], list[torch.nn.Module]],
                 loss_fn: Callable, group=None, device: torch.device | str = "cpu", lookahead: int = 2,
                 free_sent_outputs: bool = True, comm_device: torch.device | str | None = None,
                 experts: ExpertParallel | None = None):
        self.spec, self.plan, self.rank = spec, plan, rank
        self.experts = experts or ExpertParallel(rank, 0, 1)
        self.row = plan.ranks[rank]
        self.loss_fn, self.group, self.device = loss_fn, group, torch.device(device)
        self.comm_device = torch.device(comm_device) if comm_device is not None else self.device
        built = build_stages(spec.num_stages)
        if len(built) != spec.num_stages:
            raise ValueError(f"build_stages({spec.num_stages}) returned {len(built)} modules")
        self.modules = {(d, s): (built[s] if d == 0 else copy.deepcopy(built[s])).to(self.device)
                        for d, s in spec.stages_of(rank)}
        shard_experts(self.modules.values(), self.experts)
        self.parts = {key: parts_of(module) for key, module in self.modules.items()}
        self.meta: dict = {}  # edge key -> (shape, dtype), agreed at the first step
        self.records: list[Record] = []
        self.lookahead, self.free_sent_outputs = lookahead, free_sent_outputs
        # overlapped pairs without a hook: "streams" (CUDA) or "sequential"; `--profile` says which pays
        self.overlap_way = "streams" if self.device.type == "cuda" else "sequential"
        if any(parts is not None for parts in self.parts.values()):
            self.overlap_way = "chunks"
        self.flights: list = []  # (label, posted, finished) of each all-to-all (chunk parts), for the trace
        self._waited = 0.0
        self._side_stream = None  # where their forwards run on two streams
        self.synchronize_records = False  # CUDA: wait for the GPU after each instruction, so
        # `records` hold the GPU's times rather than the launch times (slows the step: for traces)
        self.received_proof = sends_received_before(plan, rank)
        self.recomputed = {_key(x) for x in self.row if x.kind is OpKind.R}  # their F runs without autograd
        self.tally = None  # an ActivationTally (--memory)
        self.part_times = {key: [] for key in self.modules}  # (section, part, seconds) of parts run alone
        self.current: tuple[str, float] | None = None  # what runs and since when (wall clock; watch.py)

    def step(self, inputs: list[torch.Tensor] | None, targets: list[torch.Tensor] | None) -> dict[int, torch.Tensor]:
        """One training step over all microbatches. `inputs`/`targets`: one tensor per global
        microbatch (needed on the ranks holding the first / last stage). Returns the losses this
        rank computed, by global microbatch."""
        state = _StepState()
        self.records, self.flights, self._inputs, self._targets = [], [], inputs, targets
        self._plan_receives(state)
        for index, instr in enumerate(self.row):
            self._index = index
            self.current = (str(instr), time.time())
            self._waited = 0.0
            start = time.perf_counter()
            try:
                self._execute(instr, state)
            except Exception as exc:
                raise RuntimeError(f"rank {self.rank}, instruction {index} ({instr}): {exc}") from exc
            if self.synchronize_records and self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            self.records.append(Record(index, instr, start, time.perf_counter(), self._waited))
        for peer, queue in state.sends.items():
            self._let_go(state, peer, proven=state.released.get(peer, 0) + len(queue))
        sync_gradients(self.modules.values(), self.experts)
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
            state.inputs[_key(instr)] = self._recv(state, instr.peer, _edge_of(instr))
        elif kind is OpKind.SEND_B:
            self._send(state, state.input_grads.pop(_key(instr)), instr.peer, ("B", instr.direction, instr.stage))
        elif kind is OpKind.RECV_B:
            state.grads[_key(instr)] = self._recv(state, instr.peer, _edge_of(instr))
        elif kind is OpKind.GRAD_SUM:
            sum_with_mirror(self.modules, self._process(instr.peer), self.group, self.comm_device, self.device)
        elif kind is OpKind.R:
            self._recompute(instr, state)

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
        if (d, s, j) not in self.recomputed:
            self._keep_forward(d, s, j, x, *self._run_forward(d, s, j, x), state)
            return
        with torch.no_grad():  # R rebuilds the graph: keep the input, pass the output on
            out, loss, _chunk = self._run_forward(d, s, j, x)
        self._keep_forward(d, s, j, x, out, loss, None, state)
        state.saved[(d, s, j)] = x  # R replaces it with (input, output or loss)
        if self.tally is not None:
            self.tally.hold_input((d, s, j), s, x)

    def _recompute(self, op: Instr, state: _StepState) -> None:
        d, s, j = _key(op)
        x = state.saved.pop((d, s, j))
        if self.tally is not None:
            self.tally.release_input((d, s, j))
        out, loss, chunk = self._run_forward(d, s, j, x)
        state.saved[(d, s, j)] = (x, out if loss is None else loss)
        if chunk is not None:
            state.chunks[(d, s, j)] = chunk

    def _chunk(self, d: int, s: int, j: int, x) -> ChunkRun:
        label = f"stage {s}" + (f" direction {d}" if d else "") + f" microbatch {j}"
        return ChunkRun(self.parts[(d, s)], x, label, *self._loss_and_target(d, s, j), log=self.flights)

    def _run_forward(self, d: int, s: int, j: int, x):
        """The stage's forward: (output, loss or None, ChunkRun or None)."""
        with self._saving(s):
            if self.parts[(d, s)] is None:
                return (*stage_forward(self.modules[(d, s)], x, *self._loss_and_target(d, s, j)), None)
            chunk = self._chunk(d, s, j, x)
            self._waited += sequential(chunk.forward(self.part_times[(d, s)]))
            return chunk.out, chunk.loss, chunk

    def _saving(self, stage: int):
        return self.tally.saving(stage) if self.tally is not None else contextlib.nullcontext()

    def _run_backward(self, key, root: Root, full: bool):
        """Stage `key`'s backward (full, or input-only): (input gradient, what W needs or None)."""
        if root.chunk is None:
            return (full_backward(root), None) if full else backward_input(self.modules[key], root)
        self._waited += sequential(self._chunk_backward(self.modules[key], root, full, self.part_times[key]))
        return (root.x.grad if root.has_input else None), (None if full else ("chunk", root.chunk))

    @staticmethod
    def _chunk_backward(module, root: Root, full: bool, timings=None):
        return root.chunk.backward(root.grad, full, () if full else list(module.parameters()), timings)

    def _keep_forward(self, d: int, s: int, j: int, x, out, loss, chunk, state: _StepState) -> None:
        """Save what the stage's backward needs; pass the output on (loss on the last stage)."""
        if chunk is not None:
            state.chunks[(d, s, j)] = chunk
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
        return Root(x, out, grad, has_input=s > 0, chunk=state.chunks.pop((d, s, j), None))

    def _backward(self, op: Instr, state: _StepState, full: bool) -> None:
        d, s, j = _key(op)
        root = self._root(d, s, j, state)
        input_grad, pending = self._run_backward((d, s), root, full)
        if not full:
            state.pending_w[(d, s, j)] = pending
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
        """OVERLAP(F, B or I): the chunks' parts interleaved, or `run_pair` (the stage's hook, or
        `overlap_way`)."""
        forward, backward = instr.parts
        d0, s0, j0 = _key(forward)
        d1, s1, j1 = _key(backward)
        full = backward.kind is OpKind.B
        if (d0, s0, j0) in self.recomputed:  # a forward without autograd: then the backward
            self._forward(forward, state)
            self._backward(backward, state, full=full)
            return
        x0 = self._stage_input(d0, s0, j0, state)
        root1, module1 = self._root(d1, s1, j1, state), self.modules[(d1, s1)]
        chunk0 = None
        if self.parts[(d0, s0)] is not None and root1.chunk is not None and self.overlap_way == "chunks":
            chunk0 = self._chunk(d0, s0, j0, x0)
            with self._saving(s0):
                self._waited += interleave(chunk0.forward(), self._chunk_backward(module1, root1, full))
            out0, loss0 = chunk0.out, chunk0.loss
            input_grad = root1.x.grad if root1.has_input else None
            pending = None if full else ("chunk", root1.chunk)
        elif self.parts[(d0, s0)] is not None or root1.chunk is not None:  # one after the other
            out0, loss0, chunk0 = self._run_forward(d0, s0, j0, x0)
            input_grad, pending = self._run_backward((d1, s1), root1, full)
        else:
            loss_fn0, target0 = self._loss_and_target(d0, s0, j0)
            pair = Pair(self.modules[(d0, s0)], x0, loss_fn0, target0, module1, root1, full)
            if self.overlap_way == "streams" and self._side_stream is None:
                self._side_stream = torch.cuda.Stream(self.device)
            with self._saving(s0):
                out0, loss0, input_grad, pending = run_pair(pair, self.overlap_way, self._side_stream)
        self._keep_forward(d0, s0, j0, x0, out0, loss0, chunk0, state)
        if not full:
            state.pending_w[(d1, s1, j1)] = pending
        self._hand_back(d1, s1, j1, input_grad, state)

    # ---- transfers -------------------------------------------------------------------------

    def _process(self, peer: int) -> int:
        """The process of pipeline rank `peer` this one exchanges with (the same EP member)."""
        return self.experts.process_of(peer)

    def _send(self, state: _StepState, tensor: torch.Tensor, peer: int, edge) -> None:
        tensor = tensor.detach().to(self.comm_device).contiguous()
        works = []
        if edge not in self.meta:
            meta = shape_message(tensor).to(self.comm_device)  # NCCL sends device tensors only
            works.append(dist.isend(meta, self._process(peer), group=self.group))
            self.meta[edge] = (tuple(tensor.shape), tensor.dtype)
        elif self.meta[edge] != (tuple(tensor.shape), tensor.dtype):
            raise RuntimeError(f"{edge[0]} transfer of stage {edge[2]} changed shape or dtype: "
                               f"{tuple(tensor.shape)} {tensor.dtype}, agreed {self.meta[edge]}")
        works.append(dist.isend(tensor, self._process(peer), group=self.group))
        queue = state.sends.setdefault(peer, deque())
        queue.append((works, tensor))
        self._let_go(state, peer)

    def _let_go(self, state: _StepState, peer: int, proven: int = 0) -> None:
        """Wait for and drop the step's sends to `peer` that are done: the first `proven` (the plan
        proves the peer has them, or the step is over) and those after them that report completion
        (NCCL's CUDA event; gloo's sends never report it before `wait`). The waits return at once."""
        queue = state.sends.get(peer)
        released = state.released.get(peer, 0)
        while queue and (released < proven or all(work.is_completed() for work in queue[0][0])):
            works, _tensor = queue.popleft()
            for work in works:
                work.wait()
            released += 1
        state.released[peer] = released

    def _plan_receives(self, state: _StepState) -> None:
        """Once every edge's shape is known (after the first step), queue each peer's RECVs in
        plan order and post the first `lookahead` of them."""
        receives = [(i, x) for i, x in enumerate(self.row) if x.kind in (OpKind.RECV_F, OpKind.RECV_B)]
        if self.lookahead <= 0 or any(_edge_of(x) not in self.meta for _, x in receives):
            return
        for i, x in receives:
            state.upcoming.setdefault(x.peer, []).append(i)
        for peer in state.upcoming:
            self._post_next(state, peer, self.lookahead)

    def _post_next(self, state: _StepState, peer: int, count: int) -> None:
        queue = state.upcoming.get(peer, [])
        while queue and count > 0:
            index = queue.pop(0)
            shape, dtype = self.meta[_edge_of(self.row[index])]
            buffer = torch.empty(shape, dtype=dtype, device=self.comm_device)
            state.posted[index] = (dist.irecv(buffer, self._process(peer), group=self.group), buffer)
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
            dist.recv(meta, self._process(peer), group=self.group)
            self.meta[edge] = read_shape_message(meta.cpu())
        shape, dtype = self.meta[edge]
        buffer = torch.empty(shape, dtype=dtype, device=self.comm_device)
        dist.recv(buffer, self._process(peer), group=self.group)
        return buffer


def _key(instr: Instr) -> tuple[int, int, int]:
    return instr.direction, instr.stage, instr.microbatch


def _edge_of(receive: Instr) -> tuple[str, int, int]:
    """The edge a RECV takes from: (kind, direction, sending stage)."""
    return ("F", receive.direction, receive.stage - 1) if receive.kind is OpKind.RECV_F else \
        ("B", receive.direction, receive.stage + 1)
