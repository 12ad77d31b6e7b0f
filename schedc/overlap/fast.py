"""The search's own evaluator: the pair's event simulation (pair.py's model, the same arithmetic)
on a state of chain positions, stepped from one branch point to the next; and the lower bound of a
state. A test cross-checks `advance` against `pair.simulate_lanes`.

A state is the tuple (t, fd, bd, wmask, wwork, c, crem, m, mrem, lastw): the time; the forward
and B parts done (a prefix of each chain); the W parts done (a bit mask over `PairProblem.weight`)
and their work; the part the compute lane holds (-1: none) and its remaining work (all of it while
it waits for its predecessor); the same for the communication lane; the W index of the compute
lane's last issue when that was a W part (-1 otherwise).
"""

from __future__ import annotations

import math

from .bound import work_bound
from .chunk import COMM, COMPUTE, PairProblem
from .pair import EPS

INF = math.inf
START = (0.0, 0, 0, 0, 0.0, -1, 0.0, -1, 0.0, -1)


def _next_on(lanes: list[int], lane: int) -> list[int]:
    """nxt[k]: the first position >= k of the chain whose part is on `lane` (len when none)."""
    nxt = [len(lanes)] * (len(lanes) + 1)
    for k in reversed(range(len(lanes))):
        nxt[k] = k if lanes[k] == lane else nxt[k + 1]
    return nxt


def _prefix(values: list[float]) -> list[float]:
    out = [0.0] * (len(values) + 1)
    for k, v in enumerate(values):
        out[k + 1] = out[k] + v
    return out


def _after_last(work: list[float], lanes: list[int], lane: int) -> float:
    """The work in a chain after its last part on `lane` (0 when it has none)."""
    last = max((k for k, l in enumerate(lanes) if l == lane), default=len(lanes) - 1)
    return math.fsum(work[last + 1:])


class Tables:
    """The problem's arrays as the hot loop reads them, by chain position (F: forward, B: the
    backward's B parts, W: `PairProblem.weight` order). `pre_*`: prefix sums of the chain's work;
    `nc_*` / `nm_*`: the next compute / communication position at or after k; `tail_b[k]`: the
    B chain from k on, or to a W part's B part and then the W part, whichever is longer."""

    def __init__(self, problem: PairProblem):
        p = problem
        self.fid, self.bid, self.wid = p.forward, p.backward, p.weight
        self.nf, self.nb = len(p.forward), len(p.backward)
        self.work, self.slow, self.share = p.work, 1.0 - p.share, p.share
        self.kind, self.pos = [0] * len(p.work), [0] * len(p.work)
        for kind, ids in ((0, p.forward), (1, p.backward), (2, p.weight)):
            for k, i in enumerate(ids):
                self.kind[i], self.pos[i] = kind, k
        b_position = {b: k for k, b in enumerate(p.backward)}
        self.wpred = [b_position[p.pred[w]] for w in p.weight]
        self.wpred_comm = [p.lane[p.pred[w]] == COMM for w in p.weight]
        names = [p.labels[w].split(".", 1)[1] for w in p.weight]
        self.wsame = [max((i for i in range(j) if names[i] == names[j]), default=-1)
                      for j in range(len(names))]  # the previous W part of the same name
        f_lanes, b_lanes = [p.lane[i] for i in p.forward], [p.lane[i] for i in p.backward]
        fw, bw = [p.work[i] for i in p.forward], [p.work[i] for i in p.backward]
        self.nc_f, self.nm_f = _next_on(f_lanes, COMPUTE), _next_on(f_lanes, COMM)
        self.nc_b, self.nm_b = _next_on(b_lanes, COMPUTE), _next_on(b_lanes, COMM)
        self.pre_f, self.pre_b = _prefix(fw), _prefix(bw)
        self.prec_f = _prefix([w if l == COMPUTE else 0.0 for w, l in zip(fw, f_lanes)])
        self.prec_b = _prefix([w if l == COMPUTE else 0.0 for w, l in zip(bw, b_lanes)])
        # compute / communication work of a chain from position k on
        self.restc_f = [self.prec_f[-1] - x for x in self.prec_f]
        self.restc_b = [self.prec_b[-1] - x for x in self.prec_b]
        self.restm_f = [self.pre_f[-1] - x - rc for x, rc in zip(self.pre_f, self.restc_f)]
        self.restm_b = [self.pre_b[-1] - x - rc for x, rc in zip(self.pre_b, self.restc_b)]
        self.rest_f = [self.pre_f[-1] - x for x in self.pre_f]  # the forward chain from k on
        self.tail_b = [self.pre_b[-1] - self.pre_b[k] for k in range(self.nb + 1)]
        for j, w in enumerate(p.weight):
            q = self.wpred[j]
            for k in range(q + 1):
                self.tail_b[k] = max(self.tail_b[k], self.pre_b[q + 1] - self.pre_b[k] + p.work[w])
        self.w_total = math.fsum(p.work[w] for w in p.weight)
        self.full = (1 << len(p.weight)) - 1
        # forced work after each chain's last part on a lane (the other lane's, one after another)
        self.tailc_f, self.tailc_b = _after_last(fw, f_lanes, COMPUTE), _after_last(bw, b_lanes, COMPUTE)
        self.tailm_f = _after_last(fw, f_lanes, COMM)
        last_comm = max((k for k, l in enumerate(b_lanes) if l == COMM), default=self.nb)
        self.tailm_b = _after_last(bw, b_lanes, COMM) + math.fsum(
            p.work[w] for j, w in enumerate(p.weight) if self.wpred[j] >= last_comm)

    def ready(self, part: int, fd: int, bd: int) -> bool:
        """Whether `part`'s predecessor is done when fd forward and bd B parts are."""
        kind = self.kind[part]
        if kind == 0:
            return self.pos[part] == fd
        if kind == 1:
            return self.pos[part] == bd
        return bd > self.wpred[self.pos[part]]


def advance(tb: Tables, state: tuple):
    """Run the simulation from `state` (lanes just assigned) to the next branch point.
    Returns ("decide", lane, state), ("done", makespan) or ("deadlock",)."""
    t, fd, bd, wmask, wwork, c, crem, m, mrem, lastw = state
    work, slow = tb.work, tb.slow
    while True:
        c_run = c >= 0 and tb.ready(c, fd, bd)
        m_run = m >= 0 and tb.ready(m, fd, bd)
        if c < 0 and (tb.nc_f[fd] < tb.nf or tb.nc_b[bd] < tb.nb or wmask != tb.full):
            return ("decide", COMPUTE, (t, fd, bd, wmask, wwork, c, crem, m, mrem, lastw))
        if m < 0 and (tb.nm_f[fd] < tb.nf or tb.nm_b[bd] < tb.nb):
            return ("decide", COMM, (t, fd, bd, wmask, wwork, c, crem, m, mrem, lastw))
        if not c_run and not m_run:
            return ("done", t) if c < 0 and m < 0 else ("deadlock",)
        rate = slow if m_run else 1.0
        need_c = crem / rate if c_run else INF
        need_m = mrem if m_run else INF
        dt = need_c if need_c < need_m else need_m
        t += dt
        if c_run:
            if need_c - dt <= EPS * max(1.0, t):
                kind = tb.kind[c]
                if kind == 0:
                    fd += 1
                elif kind == 1:
                    bd += 1
                else:
                    wmask |= 1 << tb.pos[c]
                    wwork += work[c]
                c, crem = -1, 0.0
            else:
                crem -= rate * dt
        if m_run:
            if need_m - dt <= EPS * max(1.0, t):
                if tb.kind[m] == 0:
                    fd += 1
                else:
                    bd += 1
                m, mrem = -1, 0.0
            else:
                mrem -= dt


def _comm_head_tail(tb: Tables, fd: int, bd: int, c: int, dc: float, m: int, mrem: float):
    """(least time before the communication lane can start, least compute that must follow its
    last part), with some communication left."""
    if m >= 0 and tb.ready(m, fd, bd):
        head = 0.0
    elif m >= 0:  # waits for the compute parts before it in its chain
        k = tb.pos[m]
        head = (tb.pre_f[k] - tb.pre_f[fd]) if tb.kind[m] == 0 else (tb.pre_b[k] - tb.pre_b[bd])
        head -= dc if c >= 0 and tb.kind[c] == tb.kind[m] else 0.0
    else:
        heads = []
        if tb.nm_f[fd] < tb.nf:
            heads.append(tb.pre_f[tb.nm_f[fd]] - tb.pre_f[fd] - (dc if c >= 0 and tb.kind[c] == 0 else 0.0))
        if tb.nm_b[bd] < tb.nb:
            heads.append(tb.pre_b[tb.nm_b[bd]] - tb.pre_b[bd] - (dc if c >= 0 and tb.kind[c] == 1 else 0.0))
        head = min(heads, default=0.0)
    tails = ([tb.tailm_f] if tb.nm_f[fd] < tb.nf else []) + ([tb.tailm_b] if tb.nm_b[bd] < tb.nb else [])
    return max(0.0, head), min(tails, default=0.0)


def _compute_head_tail(tb: Tables, fd: int, bd: int, wmask: int, c: int, m: int, dm: float):
    """(least time before the compute lane can start, least communication that must follow its
    last part), with some compute left."""
    m_kind = tb.kind[m] if m >= 0 else -1
    if c >= 0 and tb.ready(c, fd, bd):
        head = 0.0
    elif c >= 0:  # waits for the chain parts before it (its B part, for a W part)
        k = tb.pos[c] if tb.kind[c] < 2 else tb.wpred[tb.pos[c]] + 1
        head = (tb.pre_f[k] - tb.pre_f[fd]) if tb.kind[c] == 0 else (tb.pre_b[k] - tb.pre_b[bd])
        head -= dm if m_kind == min(tb.kind[c], 1) else 0.0
    else:
        heads = []
        if tb.nc_f[fd] < tb.nf:
            heads.append(tb.pre_f[tb.nc_f[fd]] - tb.pre_f[fd] - (dm if m_kind == 0 else 0.0))
        if tb.nc_b[bd] < tb.nb:
            heads.append(tb.pre_b[tb.nc_b[bd]] - tb.pre_b[bd] - (dm if m_kind == 1 else 0.0))
        if wmask != tb.full:
            q = tb.wpred[(~wmask & (wmask + 1)).bit_length() - 1]  # the first W part not done
            heads.append(0.0 if bd > q else tb.pre_b[q + 1] - tb.pre_b[bd] - (dm if m_kind == 1 else 0.0))
        head = min(heads, default=0.0)
    if wmask != tb.full:
        return max(0.0, head), 0.0
    tails = ([tb.tailc_f] if tb.nc_f[fd] < tb.nf else []) + ([tb.tailc_b] if tb.nc_b[bd] < tb.nb else [])
    return max(0.0, head), min(tails, default=0.0)


def state_bound(tb: Tables, state: tuple) -> float:
    """A lower bound on the makespan of any completion of `state` (C, M: compute and communication
    work left): the work bound of bound.py from t on, with each lane's head (it cannot start
    before) and tail (the other lane's forced work after its last part); each chain's length."""
    t, fd, bd, wmask, wwork, c, crem, m, mrem, _ = state
    dc = tb.work[c] - crem if c >= 0 else 0.0
    dm = tb.work[m] - mrem if m >= 0 else 0.0
    compute = tb.restc_f[fd] + tb.restc_b[bd] + tb.w_total - wwork - dc
    comm_f = tb.restm_f[fd] - (dm if m >= 0 and tb.kind[m] == 0 else 0.0)
    comm_b = tb.restm_b[bd] - (dm if m >= 0 and tb.kind[m] == 1 else 0.0)
    comm = comm_f + comm_b
    best = 0.0  # each lane's head and tail only add to the work bound (its slope is at most 1)
    if comm > 0:
        head, tail = _comm_head_tail(tb, fd, bd, c, dc, m, mrem)
        best = head + work_bound(max(0.0, compute - head - tail), comm, tb.share) + tail
    if compute > 0:
        head, tail = _compute_head_tail(tb, fd, bd, wmask, c, m, dm)
        best = max(best, head + work_bound(compute, max(0.0, comm - head - tail), tb.share) + tail)
    # a chain's parts, plus the other chunk's communication: it slows the chain's compute or
    # runs while the chain waits (it never overlaps the chain's own communication)
    chain_f = tb.pre_f[-1] - tb.pre_f[fd] - (dc if c >= 0 and tb.kind[c] == 0 else 0.0) \
        - (dm if m >= 0 and tb.kind[m] == 0 else 0.0) + tb.share * comm_b
    chain_b = tb.tail_b[bd] - (dc if c >= 0 and tb.kind[c] == 1 else 0.0) \
        - (dm if m >= 0 and tb.kind[m] == 1 else 0.0) + tb.share * comm_f
    return t + max(best, chain_f, chain_b)
