"""Chrome trace events (Perfetto, chrome://tracing) of a simulated timeline.

One process per rank, one complete ("X") slice per compute instruction at its simulated start and
duration, and each point-to-point transfer as a flow arrow from the producing slice to the
consuming one. Time: one cost unit is one millisecond on the trace's clock.
"""

from __future__ import annotations

from ..dag import ops_of
from ..ir import SENDS, OpKind, Plan, format_instr
from ..simulate import Timeline
from ..lang.spec import PipelineSpec

US_PER_UNIT = 1000.0


def _slice_args(instr) -> dict:
    parts = instr.parts if instr.kind is OpKind.OVERLAP else (instr,)
    return {"ops": [format_instr(p) for p in parts],
            "stage": [p.stage for p in parts], "microbatch": [p.microbatch for p in parts],
            "direction": [p.direction for p in parts]}


def build_trace(spec: PipelineSpec, plan: Plan, timeline: Timeline, label: str = "simulated") -> dict:
    """The trace object (`{"traceEvents": [...]}`); `json.dump` it to a file."""
    events = []
    for rank in range(spec.ranks):
        events.append({"ph": "M", "name": "process_name", "pid": rank, "tid": 0,
                       "args": {"name": f"rank {rank} ({label})"}})
        events.append({"ph": "M", "name": "process_sort_index", "pid": rank, "tid": 0,
                       "args": {"sort_index": rank}})
    slot_of = {}
    for slot in timeline.slots:
        events.append({"ph": "X", "name": format_instr(slot.instr), "cat": slot.instr.kind.value,
                       "pid": slot.rank, "tid": 0, "ts": slot.start * US_PER_UNIT,
                       "dur": (slot.end - slot.start) * US_PER_UNIT, "args": _slice_args(slot.instr)})
        for op in ops_of(slot.instr, spec.split_backward):
            slot_of[op] = slot
    events += _flows(spec, plan, slot_of)
    return {"traceEvents": events, "displayTimeUnit": "ms",
            "otherData": {"pipeline": spec.name, "schedule": spec.schedule, "makespan": timeline.makespan}}


def _flows(spec: PipelineSpec, plan: Plan, slot_of) -> list[dict]:
    """A flow arrow per SEND: from the end of the slice that made the data to the start of the
    slice that consumes it on the peer."""
    backward = OpKind.I if spec.split_backward else OpKind.B
    events, flow_id = [], 0
    for rank, row in enumerate(plan.ranks):
        for instr in row:
            if instr.kind not in SENDS:
                continue
            forward = instr.kind is OpKind.SEND_F
            kind = OpKind.F if forward else backward
            step = 1 if forward else -1
            src = slot_of.get(instr._replace(kind=kind, peer=-1))
            dst = slot_of.get(instr._replace(kind=kind, stage=instr.stage + step, peer=-1))
            if src is None or dst is None:
                continue
            flow_id += 1
            name = format_instr(instr)
            events.append({"ph": "s", "id": flow_id, "name": name, "cat": "transfer", "pid": src.rank,
                           "tid": 0, "ts": src.end * US_PER_UNIT - 0.001})
            events.append({"ph": "f", "bp": "e", "id": flow_id, "name": name, "cat": "transfer",
                           "pid": dst.rank, "tid": 0, "ts": dst.start * US_PER_UNIT})
    return events
