"""Live expert balancing (`schedc run --ep E --rebalance-every N [--window W] [--redundant R]
[--max-moves K] [--load-log DIR]`): EPLB while training runs.

Every process counts the tokens its routers send to each expert (`ExpertLoadCounter` hooks on
each MoE layer's `router`); after each step the counts are summed over the EP group (each member
routes its own part of every microbatch) and kept for the last W steps. After every N-th step
(never after the last), member 0 of each group plans a placement with `schedc.experts.plan_experts`
("best", R redundant slots per layer, migration-aware: the placement in use is `previous`, so the
fewest slots change, or at most K), the plan is broadcast, and `migration.py` moves the experts
and their optimizer state; replicas' gradients are summed every step (`groups.sync_gradients`).
The imbalance logged per step is max / mean tokens per EP member of each layer (each replica
carrying an equal share of its expert's tokens, as the routing splits them), averaged over the
process's MoE layers.

The contract a MoE layer follows to be rebalanced (examples/models/moe.py does): the expert
contract of groups.py, plus `router` (a module whose output holds the top-k expert indices, as
`ExpertLoadCounter` reads them) and `phy2log` (a LongTensor: the expert in each physical slot;
member m holds slots m*S .. (m+1)*S - 1 as `experts`), routing each (token, choice) pair with
`expert_loads.route_to_slots`. The runner writes the slots' modules in place and replaces
`phy2log` between steps.
"""

from __future__ import annotations

import json
import os
import time
from collections import deque
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ..expert_loads import ExpertLoadCounter
from .groups import ExpertParallel, expert_layers
from .migration import MigrationFailed, add_redundant_slots, migrate


@dataclass(frozen=True)
class Rebalancing:
    """The options: rebalance after every `every` steps on the counts of the last `window`, with
    `redundant` extra slots per layer, at most `max_moves` changed slots per layer (None: no
    limit), only the moves that bring each layer's busiest member within 1 + `tolerance` of a
    lower bound on any plan (else of the best plan's; `plan_experts`), decisions and per-step
    loads written under `log` (None: not written)."""

    every: int
    window: int
    redundant: int = 0
    max_moves: int | None = None
    log: str | None = None
    tolerance: float = 0.02


def rebalancing_problem(stages, size: int, redundant: int) -> str | None:
    """Why these stages cannot be rebalanced live with EP groups of `size`, or None."""
    if size < 2:
        return "--rebalance-every moves experts between the members of an EP group: give --ep 2 or more"
    if redundant % size:
        return (f"--redundant {redundant} must be a multiple of --ep {size} (every member gets as many "
                "extra slots)")
    for layer in expert_layers(stages):
        missing = [name for name in ("router", "phy2log") if not hasattr(layer, name)]
        if missing:
            return (f"--rebalance-every needs every MoE layer to have `router` and `phy2log` (see "
                    f"examples/models/moe.py); a {type(layer).__name__} lacks {' and '.join(missing)}")
        if redundant > layer.num_experts:
            return (f"--redundant {redundant} is more than a layer's {layer.num_experts} experts: a member "
                    "would hold two copies of one expert")
    return None


def member_loads(counts: torch.Tensor, placement: torch.Tensor, members: int) -> torch.Tensor:
    """Tokens per member `[members]` of one layer: each replica an equal share of its expert."""
    copies = torch.bincount(placement, minlength=counts.numel()).clamp(min=1)
    share = counts.double() / copies
    return share[placement].view(members, -1).sum(1)


def imbalance(counts: torch.Tensor, placements: list[torch.Tensor], members: int) -> float:
    """Max / mean tokens per member, averaged over the layers (1.0: perfectly even)."""
    ratios = []
    for row, placement in zip(counts, placements):
        loads = member_loads(row, placement, members)
        if loads.sum() > 0:
            ratios.append(float(loads.max() / loads.mean()))
    return sum(ratios) / len(ratios) if ratios else 1.0


class LiveBalancer:
    """One process's live balancing: its MoE layers (`names`: where each is), the count window,
    the log. Every process of the world calls `end_step` and `rebalance` at the same steps."""

    def __init__(self, modules: dict, place: ExpertParallel, options: Rebalancing, device, process: int):
        self.place, self.options, self.device, self.process = place, options, device, process
        self.layers, self.names = [], []
        for (_d, s), module in modules.items():
            for i, layer in enumerate(expert_layers([module])):
                self.layers.append(layer)
                self.names.append(f"stage {s} MoE layer {i}")
        add_redundant_slots(self.layers, place, options.redundant)
        self.experts = self.layers[0].num_experts if self.layers else 0
        self.counter = ExpertLoadCounter(len(self.layers), self.experts)
        self.handles = self.counter.attach([layer.router for layer in self.layers])
        self.window: deque = deque(maxlen=options.window)
        if place.member == 0 and self.layers:  # plan once on even loads: imports and first calls not timed later
            self._plan(torch.ones(len(self.layers), self.experts, dtype=torch.float64).numpy(), warm_up=True)
        self.steps: list[dict] = []  # per step: imbalance, step seconds (this group)
        self.decisions: list[dict] = []

    def stop_counting(self) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles = []

    def _placements(self) -> list[torch.Tensor]:
        return [layer.phy2log.clone() for layer in self.layers]

    def end_step(self, step: int, seconds: float) -> None:
        """Sum this step's counts over the group, keep them in the window, log the imbalance."""
        counts = self.counter.counts.clone()
        self.counter.reset()
        if self.place.size > 1 and self.layers:
            wire = counts.to(self.device)
            dist.all_reduce(wire, group=self.place.group)
            counts = wire.cpu()
        self.window.append(counts)
        slowest = torch.tensor([seconds], dtype=torch.float64, device=self.device)
        dist.all_reduce(slowest, op=dist.ReduceOp.MAX)
        self.steps.append({"step": step, "imbalance": imbalance(counts, self._placements(), self.place.size),
                           "step_ms": slowest.item() * 1e3, "tokens": counts.tolist()})

    def due(self, step: int, steps: int) -> bool:
        return (step + 1) % self.options.every == 0 and step + 1 < steps

    def _plan(self, weight, warm_up: bool = False) -> tuple[list[torch.Tensor], dict]:
        """Member 0's plan (broadcast to the group): the new placements and what planning took."""
        from ....experts import plan_experts

        old = torch.stack(self._placements())
        figures = torch.zeros(2, dtype=torch.float64)  # planning seconds, a fresh plan's moves
        new = old.clone()
        if self.place.member == 0:
            slots = old.shape[1]
            busy = weight.sum(axis=1) > 0  # a layer no token reached keeps its placement
            if busy.any():
                start = time.perf_counter()
                plan = plan_experts(weight[busy], slots, 1, 1, self.place.size, "best", previous=old.numpy()[busy],
                                    max_moves=self.options.max_moves, tolerance=self.options.tolerance or None)
                figures[0] = time.perf_counter() - start
                new[torch.from_numpy(busy)] = torch.tensor(plan.phy2log.tolist())
                fresh = plan_experts(weight[busy], slots, 1, 1, self.place.size, "best")
                figures[1] = float((fresh.phy2log != old.numpy()[busy]).sum())
        if warm_up:
            return [], {}
        if self.place.size > 1:
            root = self.place.rank * self.place.size
            wire_new, wire_figures = new.to(self.device), figures.to(self.device)
            dist.broadcast(wire_new, root, group=self.place.group)
            dist.broadcast(wire_figures, root, group=self.place.group)
            new, figures = wire_new.cpu(), wire_figures.cpu()
        return list(new), {"plan_ms": figures[0].item() * 1e3, "fresh_plan_moves": int(figures[1])}

    def rebalance(self, step: int, optimizer, runner=None) -> dict:
        """Plan on the window and move the experts; returns the decision (also logged)."""
        weight = torch.stack(list(self.window)).sum(0).double().numpy()
        before = self._placements()
        new, figures = self._plan(weight)
        label = f"live rebalancing after step {step}: moving experts of {', '.join(sorted(set(self.names)))}"
        if runner is not None:
            runner.current = (label, time.time())  # the watchdog publishes it: peers name it
        start = time.perf_counter()
        moves, sent, committed = migrate(self.layers, new, optimizer, self.place, self.device, self.names)
        seconds = time.perf_counter() - start
        sent_total = torch.tensor([sent], dtype=torch.float64, device=self.device)
        slowest = torch.tensor([seconds], dtype=torch.float64, device=self.device)
        if self.place.size > 1:  # bytes sent by the whole group; the slowest member's time
            dist.all_reduce(sent_total, group=self.place.group)
            dist.all_reduce(slowest, op=dist.ReduceOp.MAX, group=self.place.group)
        window = torch.from_numpy(weight)
        decision = {"step": step, "rank": self.place.rank, "moves": len(moves), "slots": sum(p.numel() for p in before),
                    "committed": committed, "bytes": int(sent_total), "migration_ms": slowest.item() * 1e3,
                    "imbalance_before": imbalance(window, before, self.place.size),
                    "imbalance_planned": imbalance(window, self._placements() if committed else new, self.place.size),
                    **figures, "names": self.names, "weight": weight.tolist(),
                    "phy2log": [p.tolist() for p in before], "placed": [p.tolist() for p in new]}
        self.decisions.append(decision)
        return decision

    def write_log(self) -> None:
        """Member 0 of each group writes its steps and decisions under the log folder: one
        `rank{R}-step{S}.json` per decision (`schedc balance FILE --previous FILE --replicas R --gpus E
        --tolerance T` replays it: "weight" is the window's loads, "phy2log" the placement in use)
        and `rank{R}-steps.jsonl`."""
        if self.options.log is None or self.place.member != 0:
            return
        os.makedirs(self.options.log, exist_ok=True)
        for decision in self.decisions:
            path = os.path.join(self.options.log, f"rank{self.place.rank}-step{decision['step']}.json")
            record = {**decision, "ep": self.place.size, "redundant": self.options.redundant,
                      "max_moves": self.options.max_moves, "tolerance": self.options.tolerance}
            _write(path, "{\n" + ",\n".join(f" {json.dumps(k)}: {json.dumps(v)}" for k, v in record.items()) + "\n}\n")
        _write(os.path.join(self.options.log, f"rank{self.place.rank}-steps.jsonl"),
               "".join(json.dumps(row) + "\n" for row in self.steps))


def _write(path: str, text: str) -> None:
    temporary = path + ".tmp"
    with open(temporary, "w", encoding="utf-8") as out:
        out.write(text)
    os.replace(temporary, path)


def report(balancer: LiveBalancer, decisions: list[dict], process: int) -> None:
    """Process 0 prints one line per group for a rebalance (`decisions`: every group's, gathered)."""
    if process != 0:
        return
    for d in decisions:
        if d["rank"] is None:
            continue
        what = "moved" if d["committed"] else "NOT committed (a digest did not match; the old placement serves)"
        print(f"rebalance after step {d['step']}, rank {d['rank']}: {d['moves']} of {d['slots']} slots {what} "
              f"(a fresh plan would move {d['fresh_plan_moves']}); plan {d['plan_ms']:.1f} ms, migration "
              f"{d['migration_ms']:.1f} ms ({d['bytes'] / 1e6:.2f} MB sent); tokens max/mean per EP member "
              f"{d['imbalance_before']:.2f} -> {d['imbalance_planned']:.2f} on the window", flush=True)


def after_step(balancer: LiveBalancer, step: int, steps: int, optimizer, runner, flights: list) -> None:
    """The rank program's hook after each training step's optimizer step: log the step, and when
    due rebalance and print every group's decision (process 0), marking it on the trace's
    communication lane. Raises `MigrationFailed` when a member of any group cannot be reached."""
    from .steps import step_figures

    balancer.end_step(step, step_figures(runner.records)[0])
    if not balancer.due(step, steps):
        return
    start = time.perf_counter()
    decision = balancer.rebalance(step, optimizer, runner)
    flights.append((f"rebalance: {decision['moves']} moves, {decision['bytes'] / 1e6:.2f} MB, plan "
                    f"{decision['plan_ms']:.1f} ms", start, time.perf_counter()))
    brief = {k: v for k, v in decision.items() if k not in ("weight", "phy2log", "placed", "names")}
    everyone = [None] * dist.get_world_size()
    try:
        dist.all_gather_object(everyone, brief if balancer.place.member == 0 else {"rank": None})
    except RuntimeError as error:
        raise MigrationFailed(f"gathering the rebalance decisions after step {step}", error) from None
    runner.current = ("between steps", time.time())
    report(balancer, everyone, balancer.process)


def summary(balancer: LiveBalancer) -> None:
    """Process 0 prints the imbalance and the step time before and after the first rebalance
    (every group's imbalance averaged; the step time is the slowest process's, the median)."""
    import statistics

    everyone = [None] * dist.get_world_size()
    dist.all_gather_object(everyone, balancer.steps if balancer.place.member == 0 else None)
    balancer.stop_counting()
    balancer.write_log()
    if balancer.process != 0 or not balancer.decisions:
        return
    groups = [rows for rows in everyone if rows is not None]
    first = balancer.decisions[0]["step"]

    def figures(chosen) -> tuple[float, float]:
        rows = [[r for r in g if chosen(r["step"])] for g in groups]
        ratio = statistics.mean(r["imbalance"] for g in rows for r in g)
        return ratio, statistics.median(r["step_ms"] for r in rows[0])

    before = figures(lambda s: 0 < s <= first or (first == 0 and s == 0))
    after = figures(lambda s: s > first)
    print(f"live rebalancing: tokens max/mean per EP member {before[0]:.2f} up to the first rebalance, "
          f"{after[0]:.2f} after ({after[0] / before[0] - 1:+.0%}); step {before[1]:.2f} ms before, "
          f"{after[1]:.2f} ms after ({after[1] / before[1] - 1:+.0%}) (medians of the slowest process; "
          "the first step not counted)", flush=True)
