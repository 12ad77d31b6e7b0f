"""A tiny mixture-of-experts stack: record expert loads with a forward hook on each top-k router,
balance them, and count the tokens each GPU gets on fresh batches under each placement.

    python examples/models/moe.py [--layers 4 --experts 32 --gpus 8 --replicas 40 --batches 8]

The routers are skewed on purpose (a fixed bias per expert), as trained routers often are.
"""

from __future__ import annotations

import argparse

import torch

from schedc.backends.torch.expert_loads import ExpertLoadCounter, tokens_per_gpu
from schedc.experts import plan_experts

WIDTH, TOP_K, TOKENS = 32, 2, 256


class TopKRouter(torch.nn.Module):
    """Scores every expert, keeps the top k: returns (weights [tokens, k], indices [tokens, k])."""

    def __init__(self, width: int, experts: int, k: int, skew: float):
        super().__init__()
        self.proj = torch.nn.Linear(width, experts)
        self.k = k
        with torch.no_grad():
            self.proj.bias.copy_(torch.randn(experts) * skew)

    def forward(self, x):
        weights, indices = torch.softmax(self.proj(x), dim=-1).topk(self.k, dim=-1)
        return weights / weights.sum(-1, keepdim=True), indices


class MoELayer(torch.nn.Module):
    """A router and one small MLP per expert; each token mixes its top-k experts' outputs."""

    def __init__(self, width: int, experts: int, k: int, skew: float):
        super().__init__()
        self.router = TopKRouter(width, experts, k, skew)
        self.experts = torch.nn.ModuleList(
            torch.nn.Sequential(torch.nn.Linear(width, width), torch.nn.GELU()) for _ in range(experts))

    def forward(self, x):
        weights, indices = self.router(x)
        out = torch.zeros_like(x)
        for e, expert in enumerate(self.experts):
            token, slot = torch.nonzero(indices == e, as_tuple=True)
            if token.numel():
                out[token] += weights[token, slot, None] * expert(x[token])
        return x + out


def build_model(layers: int, experts: int, skew: float = 1.5) -> torch.nn.Sequential:
    torch.manual_seed(0)
    return torch.nn.Sequential(*(MoELayer(WIDTH, experts, TOP_K, skew) for _ in range(layers)))


def batches(count: int, seed: int):
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(TOKENS, WIDTH, generator=generator) for _ in range(count)]


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
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
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
