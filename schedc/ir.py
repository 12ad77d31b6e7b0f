"""The IR: op kinds, instructions, per-rank plans, and their one canonical text form.

Invariants:
- `Instr` is frozen and hashable; compute instructions are the nodes of the dependency DAG.
- `parse_instr_token(format_instr(x)) == x` for every instruction (tests say so).
- A compute op is identified by (kind, direction, stage, microbatch). `R` (recompute) exists only
  on stages that recompute (`recompute { }`): it needs its forward and the backward's incoming
  gradient, and its backward (B or I) needs it, so it runs right before that backward. `direction` is 0 except for
  the second direction of a bidirectional pipeline, printed as a trailing `r` (`F0.3r`).
- Microbatch numbers count per direction: in a bidirectional pipeline with N microbatches, each
  direction runs microbatches 0..N/2-1 (direction 1's microbatch j is the global microbatch N/2+j).

May import: errors
Libraries at module level: none
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum
from typing import NamedTuple


class OpKind(Enum):
    """What an instruction does. Values are the short names used in the text form."""

    F = "F"  # forward of one stage for one microbatch
    B = "B"  # full backward (input and weight gradients together)
    I = "I"  # input-gradient backward  # noqa: E741
    W = "W"  # weight-gradient backward
    R = "R"  # recompute: rebuild the activation its forward dropped, right before the backward
    OVERLAP = "OVERLAP"  # a forward and a backward of different microbatches run together
    SEND_F = "SEND_F"  # send a stage's output activation to the next stage's rank
    RECV_F = "RECV_F"  # receive the previous stage's activation
    SEND_B = "SEND_B"  # send a stage's input gradient to the previous stage's rank
    RECV_B = "RECV_B"  # receive the next stage's input gradient
    GRAD_SUM = "GRAD_SUM"  # sum weight gradients with the rank holding the other replicas (DualPipe)

    # Members are singletons compared by identity, so identity hashing is consistent; it runs in C,
    # where Enum's own __hash__ runs Python code (instructions are hashed millions of times).
    __hash__ = object.__hash__


COMPUTE = frozenset({OpKind.F, OpKind.B, OpKind.I, OpKind.W, OpKind.R})
BACKWARD = frozenset({OpKind.B, OpKind.I, OpKind.W})
SENDS = frozenset({OpKind.SEND_F, OpKind.SEND_B})
RECVS = frozenset({OpKind.RECV_F, OpKind.RECV_B})
COMM = SENDS | RECVS | {OpKind.GRAD_SUM}
_TAKES_COMPUTE = COMPUTE | {OpKind.OVERLAP}


_TUPLE_NEW = tuple.__new__


class Instr(NamedTuple):
    """One instruction of a rank's list: immutable and hashable (a DAG node as it is).

    Compute kinds use `direction`, `stage`, `microbatch`; OVERLAP holds its forward and backward
    in `parts`; SEND/RECV use the stage on *this* rank plus `peer`; GRAD_SUM only `peer`.
    A NamedTuple rather than a frozen dataclass: hashing and comparing run in C, and the passes
    hash instructions millions of times on large pipelines (benchmarks/compile_speed.py).
    """

    kind: OpKind
    direction: int = 0
    stage: int = -1
    microbatch: int = -1
    peer: int = -1
    parts: tuple = ()

    def __lt__(self, other: "Instr") -> bool:  # Enum members do not order; order by text instead
        return _sort_key(self) < _sort_key(other)

    @staticmethod
    def compute(kind: OpKind, direction: int, stage: int, microbatch: int) -> "Instr":
        """A compute op; built by `tuple.__new__`, not NamedTuple's `__new__` (Python code):
        the passes make hundreds of thousands (benchmarks/compile_speed.py)."""
        return _TUPLE_NEW(Instr, (kind, direction, stage, microbatch, -1, ()))

    @staticmethod
    def transfer(kind: OpKind, direction: int, stage: int, microbatch: int, peer: int) -> "Instr":
        """A SEND or RECV, built as `compute` is."""
        return _TUPLE_NEW(Instr, (kind, direction, stage, microbatch, peer, ()))

    @staticmethod
    def overlap(forward: "Instr", backward: "Instr") -> "Instr":
        return Instr(OpKind.OVERLAP, parts=(forward, backward))

    @property
    def is_compute(self) -> bool:
        """F, B, I, W, R or an OVERLAP of two of them: instructions that take compute time."""
        return self.kind in _TAKES_COMPUTE

    def with_kind(self, kind: OpKind) -> "Instr":
        return Instr(kind, self.direction, self.stage, self.microbatch, self.peer, self.parts)

    def __repr__(self) -> str:
        return f"Instr({format_instr(self)})"

    def __str__(self) -> str:
        return format_instr(self)


def _sort_key(instr: Instr) -> tuple:
    return (instr.kind.value, instr.direction, instr.stage, instr.microbatch, instr.peer,
            tuple(_sort_key(p) for p in instr.parts))


def format_instr(instr: Instr) -> str:
    """The canonical token: `F0.3`, `B2.5r`, `F0.4&B3.1`, `SEND_F0.3@1`, `GRAD_SUM@7`."""
    if instr.kind is OpKind.OVERLAP:
        return "&".join(format_instr(p) for p in instr.parts)
    if instr.kind is OpKind.GRAD_SUM:
        return f"GRAD_SUM@{instr.peer}"
    core = f"{instr.kind.value}{instr.stage}.{instr.microbatch}{'r' if instr.direction else ''}"
    return f"{core}@{instr.peer}" if instr.kind in SENDS | RECVS else core


_TOKEN = re.compile(r"(?P<kind>SEND_F|RECV_F|SEND_B|RECV_B|[FBIWR])(?P<stage>\d+)\.(?P<mb>\d+)"
                    r"(?P<rev>r?)(?:@(?P<peer>\d+))?")


def parse_instr_token(token: str) -> Instr:
    """Inverse of `format_instr` for one token (the grammar has already checked its shape)."""
    if "&" in token:
        forward, backward = token.split("&")
        return Instr.overlap(parse_instr_token(forward.strip()), parse_instr_token(backward.strip()))
    if token.startswith("GRAD_SUM@"):
        return Instr(OpKind.GRAD_SUM, peer=int(token.split("@")[1]))
    match = _TOKEN.fullmatch(token)
    if not match:
        raise ValueError(f"not an instruction token: {token!r}")
    peer = int(match["peer"]) if match["peer"] is not None else -1
    return Instr(OpKind(match["kind"]), 1 if match["rev"] else 0, int(match["stage"]),
                 int(match["mb"]), peer)


@dataclass(frozen=True, slots=True)
class ComputeOrder:
    """What a schedule family decides: each rank's compute ops in order, and which adjacent
    (forward, backward) pairs it wants run as one overlapped instruction."""

    ranks: tuple[tuple[Instr, ...], ...]
    pairs: frozenset[tuple[Instr, Instr]] = frozenset()


@dataclass(frozen=True, slots=True)
class Plan:
    """The compiler's output: every rank's instruction list, compute and communication."""

    ranks: tuple[tuple[Instr, ...], ...]

    def __str__(self) -> str:
        return format_plan_text(self)


def format_plan_text(plan: Plan | ComputeOrder) -> str:
    """One line per rank, `rank R: tok tok ...`: exactly the body of an `order { }` block."""
    return "".join(f"rank {r}: {' '.join(map(format_instr, row))}\n" for r, row in enumerate(plan.ranks))


JSON_VERSION = 1


def instr_to_json(instr: Instr) -> dict:
    """The JSON object of one instruction; keys are stable once released."""
    if instr.kind is OpKind.OVERLAP:
        return {"op": "OVERLAP", "parts": [instr_to_json(p) for p in instr.parts]}
    if instr.kind is OpKind.GRAD_SUM:
        return {"op": "GRAD_SUM", "peer": instr.peer}
    obj = {"op": instr.kind.value, "stage": instr.stage, "microbatch": instr.microbatch,
           "direction": instr.direction}
    if instr.kind in SENDS | RECVS:
        obj["peer"] = instr.peer
    return obj


def instr_from_json(obj: dict) -> Instr:
    """Inverse of `instr_to_json`."""
    kind = OpKind(obj["op"])
    if kind is OpKind.OVERLAP:
        forward, backward = (instr_from_json(p) for p in obj["parts"])
        return Instr.overlap(forward, backward)
    if kind is OpKind.GRAD_SUM:
        return Instr(kind, peer=int(obj["peer"]))
    return Instr(kind, int(obj.get("direction", 0)), int(obj["stage"]), int(obj["microbatch"]),
                 int(obj.get("peer", -1)))


def plan_to_json(plan: Plan, spec_json: dict) -> dict:
    """The versioned JSON form: `{"version": 1, "spec": {...}, "ranks": [...]}`."""
    return {
        "version": JSON_VERSION,
        "spec": spec_json,
        "ranks": [{"rank": r, "instructions": [instr_to_json(i) for i in row]}
                  for r, row in enumerate(plan.ranks)],
    }


def plan_from_json(obj: dict) -> Plan:
    """Inverse of `plan_to_json` for the plan part (the spec is read by `spec.spec_from_json`)."""
    if obj.get("version") != JSON_VERSION:
        raise ValueError(f"unsupported plan JSON version {obj.get('version')!r}; this schedc reads {JSON_VERSION}")
    rows = sorted(obj["ranks"], key=lambda r: r["rank"])
    return Plan(tuple(tuple(instr_from_json(i) for i in row["instructions"]) for row in rows))
