"""The cost block `--profile` writes, from the stages' measured figures (`stage_times.py`) and the
transfers' (`comm.py`).

A send costs the sending rank time of its own: on gloo the `isend` call writes the tensor into the
socket before it returns (0.2-0.5 ms for a 256 KiB activation on the 2-core machine this was built
on), and the simulator's ops are the only time a rank spends. So the block charges each send to
the op that makes it (`charge_sends`), for exactly the ops that send to another rank under the
file's placement (`cross_rank_sends`): F of a stage whose next stage is on another rank, B (and so
I = B - W) of a stage whose previous stage is on another rank; an overlapped pair pays both of its
halves' sends (F&B gets both, so its gain F + B - F&B is unchanged). W sends nothing. The measured
one-way `comm` (half a round trip) already contains that post, so the block's comm is what is left
of the transfer after it: max(comm - send, 0). The block stays in the language as it is.
"""

from __future__ import annotations

import math

from .stage_times import StageProfile


def cross_rank_sends(spec) -> list[tuple[bool, bool]]:
    """Per stage of `spec` (a PipelineSpec): (its F sends its output to another rank, its
    backward sends its input gradient to another rank), in any direction of the placement. On a
    V the hop from stage ranks-1 to stage ranks stays on one rank: neither end sends it."""
    last = spec.num_stages - 1
    directions = range(spec.directions)

    def apart(s: int, t: int) -> bool:
        return any(spec.rank_of(d, s) != spec.rank_of(d, t) for d in directions)

    return [(s < last and apart(s, s + 1), s > 0 and apart(s, s - 1)) for s in range(last + 1)]


def sent_bytes(profiles: list[StageProfile]) -> list[int]:
    """What each stage sends: its output's bytes, or for the last stage (whose output is the loss)
    the gradient of its input, the size of the previous stage's output."""
    sizes = [p.output_bytes for p in profiles]
    if len(sizes) > 1 and not sizes[-1]:
        sizes[-1] = sizes[-2]
    return sizes


def cost_rows(profiles: list[StageProfile], comm_ms: list[float], send_ms: list[float] | None = None,
              sends: list[tuple[bool, bool]] | None = None) -> list[dict]:
    """Each stage's cost-block figures, made consistent with the language (W <= B and
    max(F, B) <= F&B <= F + B), then, given `send_ms` (posting each stage's `sent_bytes`) and
    `sends` (`cross_rank_sends`), each send charged to its op (`charge_sends`): a stage's backward
    sends a gradient the size of the previous stage's output."""
    rows = []
    for p, comm in zip(profiles, comm_ms):
        f = {k: t.ms for k, t in p.figures.items()}
        b = f["B"]
        w = min(f["W"], b)
        fb = min(max(f["F&B"], f["F"], b), f["F"] + b)
        rows.append({"stage": p.stage, "F": f["F"], "B": b, "W": w, "F&B": fb, "comm": comm})
    if send_ms is None or sends is None:
        return rows
    backward_send = [0.0] + list(send_ms[:-1])
    return charge_sends(rows, send_ms, backward_send, sends)


def charge_sends(rows: list[dict], forward_send: list[float], backward_send: list[float],
                 sends: list[tuple[bool, bool]]) -> list[dict]:
    """`rows` (F, B, W, F&B, comm per stage) with each cross-rank send's cost added to the op that
    sends it: stage s's F gets forward_send[s] when sends[s][0], its B backward_send[s] when
    sends[s][1], F&B both (the pair's gain unchanged), W nothing; comm loses the larger of the two
    (the post is part of the measured transfer), never below 0. Each row also records
    "send F" and "send B", what it was charged. Pure: `rows` are not changed."""
    charged = []
    for row, out, back, (forward_sends, backward_sends) in zip(rows, forward_send, backward_send, sends):
        sf, sb = (out if forward_sends else 0.0), (back if backward_sends else 0.0)
        charged.append({**row, "F": row["F"] + sf, "B": row["B"] + sb, "F&B": row["F&B"] + sf + sb,
                        "comm": max(row["comm"] - max(sf, sb), 0.0), "send F": sf, "send B": sb})
    return charged


_BLOCK_KEYS = ("F", "B", "W", "F&B", "comm")


def format_cost_block(rows: list[dict], origin: str = "", indent: str = "") -> str:
    """A `cost { }` block in milliseconds: stage 0's figures as the defaults, every other stage
    that differs by more than 2% in any figure as an override (a profile is per stage). The
    header names the `origin` of the figures (say, a calibration run), and says so when the rows
    were charged with sends (`charge_sends`)."""
    def items(r):
        return "  ".join(f"{k} = {_number(r[k])}" for k in _BLOCK_KEYS)
    charged = any("send F" in r for r in rows)
    rows = [_rounded(r) for r in rows]
    base = rows[0]
    note = (f", {origin}" if origin else "") + ("; each op's cross-rank send included, comm after it" if charged else "")
    lines = [f"{indent}cost {{   # measured by schedc run --profile{note}, in milliseconds", f"{indent}  {items(base)}"]
    for r in rows[1:]:
        if any(abs(r[k] - base[k]) > 0.02 * max(base[k], 1e-9) for k in _BLOCK_KEYS):
            lines.append(f"{indent}  stage {r['stage']} {{ {items(r)} }}")
    lines.append(f"{indent}}}")
    return "\n".join(lines)


def _rounded(row: dict) -> dict:
    """`row` as the block prints it (4 significant digits), with W <= B and max(F, B) <= F&B <=
    F + B still true of the printed numbers (rounding each figure alone can break them)."""
    r = {k: float(f"{row[k]:.4g}") for k in _BLOCK_KEYS}
    r["W"] = min(r["W"], r["B"])
    longer = max(r["F"], r["B"])
    pair = min(max(row["F&B"], longer), r["F"] + r["B"])
    r["F&B"] = min(max(_round_down(pair), longer), r["F"] + r["B"])  # rounding up could pass F + B
    return {**row, **r}


def _number(value: float) -> str:
    """4 significant digits, or every digit when those would change the value (an F&B equal to the
    printed F + B must read back as exactly that sum)."""
    short = f"{value:.4g}"
    return short if float(short) == value else repr(value)


def _round_down(value: float, digits: int = 4) -> float:
    """`value` cut (not rounded) to `digits` significant digits."""
    if value <= 0:
        return value
    scale = 10 ** (digits - 1 - math.floor(math.log10(value)))
    return math.floor(value * scale) / scale
