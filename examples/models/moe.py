"""A small mixture-of-experts transformer, trainable under `schedc run` with expert parallelism,
and a demo of expert load balancing.

    schedc run examples/dualpipe.sched --model examples/models/moe.py --ep 2 --check   # 2 x ranks processes
    python examples/models/moe.py [--layers 4 --experts 32 --gpus 8 --replicas 40 --batches 8]

Each block is attention, a top-k router, the all-to-all *dispatch* of every token to its experts'
EP members, the experts (small MLPs) and the all-to-all *combine* back, then the weighted mix
(plus an optional shared expert). It declares those as chunk parts (`chunk_parts`, the contract in
schedc.backends.torch.expert_parallel), so the runner can run one microbatch's dispatch or combine
while the other of an overlapped pair computes; `forward` runs the same parts in order, so the
single-process reference and the expert-parallel run execute one code path. The routers are
skewed on purpose (a fixed bias per expert), as trained routers often are: some experts get no
token on some microbatches.

Sizes come from the environment (they reach every rank): MOE_WIDTH (16), MOE_HIDDEN (32),
MOE_EXPERTS (4), MOE_TOP_K (2), MOE_LAYERS (blocks in the whole model, 4: every family runs the
same model, cut into its stages, the first stages taking one more block when they do not divide),
MOE_BATCH (sequences per microbatch, 4: a multiple of --ep), MOE_SEQ (8), MOE_SKEW (1.5),
MOE_SHARED (1: a shared expert), MOE_ZIPF (0; s > 0: a Zipf-like router, expert e's bias
-s log(e + 1), hot experts first).

Live expert balancing (`--rebalance-every N`) works on it: each block routes by `phy2log` (the
expert in each physical slot; `route_to_slots` splits an expert's tokens over its replicas), so
the runner may move experts and add replicas between steps, and it trains with SGD with momentum,
whose state moves with the experts.
"""

from __future__ import annotations

import argparse
import math
import os

import torch

from schedc.backends.torch.expert_loads import ExpertLoadCounter, route_to_slots, tokens_per_gpu
from schedc.backends.torch.expert_parallel import Exchange, Part, run_parts
from schedc.experts import plan_experts


def _size(name: str, default: int | float):
    return type(default)(os.environ.get(f"MOE_{name}", default))


WIDTH, HIDDEN, EXPERTS, TOP_K = _size("WIDTH", 16), _size("HIDDEN", 32), _size("EXPERTS", 4), _size("TOP_K", 2)
LAYERS, BATCH, SEQ, SKEW, SHARED = (_size("LAYERS", 4), _size("BATCH", 4), _size("SEQ", 8), _size("SKEW", 1.5),
                                    _size("SHARED", 1))
ZIPF = _size("ZIPF", 0.0)  # > 0: expert e's router bias is -ZIPF * log(e + 1) (a Zipf-like load, hot experts first)
TOKENS = 256  # the balancing demo's tokens per batch


class TopKRouter(torch.nn.Module):
    """Scores every expert, keeps the top k: returns (weights [tokens, k], indices [tokens, k])."""

    def __init__(self, width: int, experts: int, k: int, skew: float, zipf: float = 0.0):
        super().__init__()
        self.proj = torch.nn.Linear(width, experts)
        self.k = k
        with torch.no_grad():
            if zipf > 0:
                self.proj.bias.copy_(-zipf * torch.log(torch.arange(1.0, experts + 1)))
            else:
                self.proj.bias.copy_(torch.randn(experts) * skew)

    def forward(self, x):
        weights, indices = torch.softmax(self.proj(x), dim=-1).topk(self.k, dim=-1)
        return weights / weights.sum(-1, keepdim=True), indices


def mlp(width: int, hidden: int) -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Linear(width, hidden), torch.nn.GELU(), torch.nn.Linear(hidden, width))


class MoEBlock(torch.nn.Module):
    """Attention and a mixture-of-experts MLP, each with a residual; parts: attention (and the
    router), dispatch, mlp, combine, mix. Input [..., tokens, width]."""

    def __init__(self, width=WIDTH, hidden=HIDDEN, experts=EXPERTS, k=TOP_K, skew=SKEW, shared=SHARED):
        super().__init__()
        self.norm1, self.norm2 = torch.nn.LayerNorm(width), torch.nn.LayerNorm(width)
        self.qkv, self.out = torch.nn.Linear(width, 3 * width), torch.nn.Linear(width, width)
        self.router = TopKRouter(width, experts, k, skew, ZIPF)
        self.experts = torch.nn.ModuleList(mlp(width, hidden) for _ in range(experts))
        self.shared = mlp(width, hidden) if shared else None
        self.num_experts, self.members, self.group = experts, 1, None
        self.phy2log = torch.arange(experts)  # the expert in each slot; member m holds slots m*S..(m+1)*S-1

    def shard_experts(self, member: int, members: int, group) -> None:
        """Keep experts member*n/members .. (member+1)*n/members - 1; all-to-alls over `group`."""
        per = self.num_experts // members
        self.experts = torch.nn.ModuleList(list(self.experts)[member * per:(member + 1) * per])
        self.members, self.group = members, group

    def chunk_parts(self) -> list[Part]:
        return [Part("attention", compute=self._attention),
                Part("dispatch", exchange=Exchange("routed", "arrived", counts="dispatch_counts", group=self.group)),
                Part("mlp", compute=self._experts),
                Part("combine", exchange=Exchange("expert_out", "returned", splits="combine_splits",
                                                  group=self.group)),
                Part("mix", compute=self._mix)]

    def forward(self, x):
        return run_parts(self.chunk_parts(), x)

    def _attention(self, state: dict) -> dict:
        x = state["x"]
        q, k, v = self.qkv(self.norm1(x)).chunk(3, dim=-1)
        scores = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(x.shape[-1]), dim=-1)
        h = x + self.out(scores @ v)
        tokens = self.norm2(h).reshape(-1, h.shape[-1])
        weights, indices = self.router(tokens)
        flat = route_to_slots(indices.reshape(-1), self.phy2log, self.num_experts)  # (token, choice) pairs' slots
        order = torch.argsort(flat, stable=True)  # grouped by slot, so by member
        counts = torch.bincount(flat, minlength=self.phy2log.numel()).view(self.members, -1)  # [member, its slot]
        return {"x": h, "tokens": tokens, "weights": weights, "order": order, "dispatch_counts": counts,
                "routed": tokens[order // indices.shape[1]]}

    def _experts(self, state: dict) -> dict:
        arrived, arriving = state["arrived"], state["arrived_counts"]  # [source member, my expert]
        local = torch.arange(arriving.shape[1]).repeat(arriving.shape[0])
        expert_of_row = torch.repeat_interleave(local, arriving.reshape(-1))
        out = torch.zeros_like(arrived)
        for e, expert in enumerate(self.experts):
            rows = torch.nonzero(expert_of_row == e).flatten()
            if rows.numel():
                out = out.index_add(0, rows, expert(arrived[rows]))
        send, receive = state["dispatch_counts"].sum(1).tolist(), arriving.sum(1).tolist()
        rest = {k: v for k, v in state.items() if k not in ("arrived", "arrived_counts", "dispatch_counts")}
        if self.shared is not None:
            rest["shared_out"] = self.shared(state["tokens"])
        return {**rest, "expert_out": out, "combine_splits": (receive, send)}

    def _mix(self, state: dict) -> dict:
        h, weights, returned = state["x"], state["weights"], state["returned"]
        slots = torch.zeros_like(returned).index_copy(0, state["order"], returned)
        mixed = (slots.view(*weights.shape, -1) * weights.unsqueeze(-1)).sum(1)
        if self.shared is not None:
            mixed = mixed + state["shared_out"]
        return {"x": h + mixed.view(h.shape)}


# ---- the model file's names (schedc run --model) -------------------------------------------------

def build_stages(num_stages: int) -> list[torch.nn.Module]:
    """The model's LAYERS blocks cut into `num_stages` stages (at least one block each)."""
    torch.manual_seed(0)
    per, extra = divmod(max(LAYERS, num_stages), num_stages)
    return [torch.nn.Sequential(*(MoEBlock() for _ in range(per + (s < extra)))) for s in range(num_stages)]


def make_optimizer(parameters):
    """SGD with momentum: its per-parameter state (the momentum buffer) moves with an expert when
    live rebalancing (`--rebalance-every`) moves the expert to another EP member. (Adam's state
    moves the same way; its division by the second moment amplifies float64 rounding past
    `--check`'s 1e-12 within a few steps, with or without expert parallelism.)"""
    return torch.optim.SGD(parameters, lr=0.01, momentum=0.9)


def loss_fn(output, target):
    return torch.nn.functional.mse_loss(output, target)  # a mean: EP members' parts average to it


def make_batch(microbatches: int, step: int = 0):
    generator = torch.Generator().manual_seed(4321 + step)
    inputs = [torch.randn(BATCH, SEQ, WIDTH, generator=generator) for _ in range(microbatches)]
    targets = [torch.randn(BATCH, SEQ, WIDTH, generator=generator) for _ in range(microbatches)]
    return inputs, targets


# ---- the balancing demo --------------------------------------------------------------------------

def build_model(layers: int, experts: int, skew: float = 1.5) -> torch.nn.Sequential:
    torch.manual_seed(0)
    return torch.nn.Sequential(*(MoEBlock(32, 32, experts, TOP_K, skew, shared=0) for _ in range(layers)))


def batches(count: int, seed: int):
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(TOKENS, 32, generator=generator) for _ in range(count)]


def fresh_tokens_per_gpu(model, phy2log, gpus: int, data) -> torch.Tensor:
    """`[layers, gpus]` tokens per GPU over `data` with `phy2log [layers, R]` in place."""
    seen = [[] for _ in model]
    handles = [layer.router.register_forward_hook(
        lambda _m, _i, out, n=n: seen[n].append(out[1])) for n, layer in enumerate(model)]
    with torch.no_grad():
        for x in data:
            model(x)
    for h in handles:
        h.remove()
    return torch.stack([tokens_per_gpu(torch.cat(seen[n]), phy2log[n], gpus) for n in range(len(model))])


def run(layers=4, experts=32, gpus=8, replicas=40, batches_seen=8, skew=1.5) -> dict:
    """Record, balance ("best" and "eplb"), apply to fresh batches; returns the per-GPU tokens."""
    model = build_model(layers, experts, skew)
    counter = ExpertLoadCounter(layers, experts)
    handles = counter.attach([layer.router for layer in model])
    with torch.no_grad():
        for x in batches(batches_seen, seed=1):
            model(x)
    for h in handles:
        h.remove()
    weight = counter.loads()
    fresh = batches(batches_seen, seed=2)
    out = {"weight": weight, "model": model}
    for policy in ("eplb", "best"):
        plan = plan_experts(weight, replicas, 1, 1, gpus, policy)
        out[policy] = {"plan": plan, "fresh": fresh_tokens_per_gpu(model, plan.phy2log, gpus, fresh)}
    one_each = torch.arange(experts).expand(layers, experts)  # expert e on GPU e // (experts / gpus)
    out["no redundancy"] = {"fresh": fresh_tokens_per_gpu(model, one_each, gpus, fresh)}
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="balance a MoE stack's expert loads (EPLB and schedc's best)")
    for name, default in (("layers", 4), ("experts", 32), ("gpus", 8), ("replicas", 40), ("batches", 8)):
        parser.add_argument(f"--{name}", type=int, default=default)
    args = parser.parse_args(argv)
    result = run(args.layers, args.experts, args.gpus, args.replicas, args.batches)
    print(f"{args.layers} MoE layers x {args.experts} experts (top-{TOP_K}), {args.replicas} slots on "
          f"{args.gpus} GPUs; loads recorded over {args.batches} batches of {TOKENS} tokens, "
          "placements applied to as many fresh batches")
    print("balancedness on the fresh batches (mean / max tokens per GPU), and the max per GPU:")
    for name in ("no redundancy", "eplb", "best"):
        tokens = result[name]["fresh"].double()
        balance = (tokens.mean(1) / tokens.max(1).values).tolist()
        print(f"  {name:<14} " + " ".join(f"{b:.3f}" for b in balance)
              + f"   max tokens per GPU: {tokens.max(1).values.long().tolist()}")
    for name in ("eplb", "best"):
        print(f"  {name} planned balancedness on the recorded loads: "
              + " ".join(f"{b:.3f}" for b in result[name]["plan"].balancedness))


if __name__ == "__main__":
    main()
