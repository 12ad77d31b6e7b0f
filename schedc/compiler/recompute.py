"""`recompute = auto`: the optimizer chooses each stage's recompute option, with the order.

A candidate is one choice per stage (none, or one of the stage's options): every combination
while there are at most MAX_CANDIDATES, else the same option on the first k stages in rank order
(the ranks that hold the most microbatches in flight), for each option and k. A candidate is
scheduled folded (`passes.recompute.folded`: each R inside the backward it feeds; the R ops put back
afterwards), so the families, the search and CP-SAT schedule it as they are, and:
- a candidate whose folded pipeline cannot meet the limit (`search.bound.smallest_limit`) is out;
  when none can, a located error at `limit` says the smallest limit reachable and with which choice;
- `bound.lower_bound` of a folded pipeline bounds every folded plan of the candidate (and every
  plan, when `passes.recompute.exact_fold`): candidates go in the order of their bounds, and one
  whose bound is no better than the best step found is dropped unseen (ties: the least recompute
  time wins);
- a family: each candidate compiled (its order is the family's), the shortest step kept;
- `search`: each candidate searched for a share of SCREEN_SHARE of the budget, then the best one
  and no recompute (when it fits) each for the whole budget (and handed to CP-SAT, when
  installed): up to 2.4 x `search_time`, never worse than `search` without recompute;
- `optimal`: each candidate solved by CP-SAT; when each was proven optimal or dropped by its
  bound, the best is the optimum over every choice and order, and says so (of the plans that run
  each R, I and W back to back when a stage folds its W: `exact_fold`).

`recompute_bound(spec)` is a lower bound of any plan of a pipeline, recompute counted (for any
choice, `auto` included): the bound of the pipeline without R ops and with each stage's activation
scaled by the least `keeps` it may hold (an R only adds time; holding less only relaxes memory).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import replace

from ..dag import build_dag
from ..errors import Diagnostic, Note, SchedError
from ..ir import ComputeOrder
from ..lang.recompute import AUTO, NONE, chosen_option
from ..lang.spec import SEARCHES, PipelineSpec
from ..passes import insert_recompute
from ..passes.recompute import exact_fold, folded
from ..search.bound import Bound, lower_bound, smallest_limit
from ..simulate import simulate
from .flow import Compiled, compile_spec, finish

MAX_CANDIDATES = 243  # every combination of 3 choices on 5 stages
SCREEN_SHARE = 0.4  # of search_time, for trying every candidate under `search`
EPS = 1e-9


def compile_recompute_auto(spec: PipelineSpec) -> Compiled:
    """Compile `spec` (some stage with `recompute = auto`) with the best choice found per stage."""
    ranked = _ranked(spec, _fitting(spec, [replace(spec, recompute=c) for c in candidates(spec)]))
    if spec.schedule == "optimal":
        return _optimal(spec, ranked)
    if spec.schedule in SEARCHES:
        return _searched(spec, ranked)
    return _family(ranked)


def candidates(spec: PipelineSpec, most: int = MAX_CANDIDATES) -> list[tuple[str, ...]]:
    """Every choice vector the optimizer weighs (stages not on `auto` keep their own choice):
    every combination while there are at most `most`, else the first-k-stages ones."""
    free = sorted((s for s, c in enumerate(spec.recompute) if c == AUTO),
                  key=lambda s: (spec.rank_of(0, s), s))
    names = {s: (NONE,) + tuple(o.name for o in spec.recompute_options[s]) for s in free}
    if math.prod(len(names[s]) for s in free) <= most:
        combos = list(itertools.product(*(names[s] for s in free)))
    else:
        common = [w for w in names[free[0]] if all(w in names[s] for s in free)]
        combos = [(w,) * k + (NONE,) * (len(free) - k) for w in common if w != NONE
                  for k in range(1, len(free) + 1)] + [(NONE,) * len(free)]
    out = []
    for combo in combos:
        choice = list(spec.recompute)
        for s, word in zip(free, combo):
            choice[s] = word
        out.append(tuple(choice))
    return out


def describe_choice(spec: PipelineSpec) -> str:
    """`full on every stage`, `none`, or `stages 0-2: full, stage 5: attention` (none left out)."""
    words = spec.recompute or (NONE,) * spec.num_stages
    if len(set(words)) == 1:
        return "none" if words[0] == NONE else f"{words[0]} on every stage"
    runs, start = [], 0
    for s in range(1, len(words) + 1):
        if s == len(words) or words[s] != words[start]:
            if words[start] != NONE:
                where = f"stage {start}" if s - start == 1 else f"stages {start}-{s - 1}"
                runs.append(f"{where}: {words[start]}")
            start = s
    return ", ".join(runs)


def recompute_bound(spec: PipelineSpec) -> Bound:
    """A lower bound of every plan of `spec`, whatever its recompute choice (module docstring)."""
    if not spec.recompute:
        return lower_bound(spec)
    least = []  # per stage: the least fraction of its activation a forward may hold
    for s, (choice, options) in enumerate(zip(spec.recompute, spec.recompute_options)):
        if choice == AUTO:
            least.append(min([1.0] + [o.keeps for o in options]))
        else:
            option = chosen_option(spec, s)
            least.append(1.0 if option is None else option.keeps)
    weight_grad = spec.weight_grad or (1.0,) * spec.num_stages
    relaxed = replace(spec, recompute=(), recompute_options=(),
                      activations=tuple(a * k for a, k in zip(spec.activations, least)),
                      weight_grad=tuple(min(1.0, w / k) if k else 0.0 for w, k in zip(weight_grad, least)))
    return lower_bound(relaxed)


def check_choice_fits(spec: PipelineSpec) -> None:
    """A located error at `limit` when a fixed recompute choice cannot meet it (the folded
    pipeline's least need: what one microbatch's forwards keep on a rank, plus the largest
    restore an R adds back), in words that name the choice."""
    if spec.memory_limit is None:
        return
    need = smallest_limit(folded(spec)).value
    if need <= spec.memory_limit + EPS:
        return
    raise SchedError([Diagnostic(
        f"no schedule fits in limit = {spec.memory_limit:g} with recompute = {describe_choice(spec)}: "
        f"it needs at least {need:g} (what one microbatch's forwards keep on a rank, plus the largest "
        "part of an activation an R restores)", spec.source.span("limit") or spec.source.pipeline,
        (Note("`recompute = auto` weighs every choice of the recompute block"),))])


def _fitting(spec: PipelineSpec, options: list[PipelineSpec]) -> list[PipelineSpec]:
    """The candidates whose folded pipeline can meet the limit; a located error when none can."""
    if spec.memory_limit is None:
        return options
    needs = [(smallest_limit(folded(c)).value, c) for c in options]
    fitting = [c for need, c in needs if need <= spec.memory_limit + EPS]
    if fitting:
        return fitting
    need, best = min(needs, key=lambda x: (x[0], _extra(x[1])))
    raise SchedError([Diagnostic(
        f"no recompute choice fits in limit = {spec.memory_limit:g}: the smallest limit reachable is "
        f"{need:g}, with recompute = {describe_choice(best)}",
        spec.source.span("limit") or spec.source.pipeline,
        (Note(f"{len(options)} choices weighed (none or an option of the recompute block, per stage)"),))])


def _extra(spec: PipelineSpec) -> float:
    """The recompute time a choice adds over the step (for ties: less is better)."""
    return sum(o.cost for s in range(spec.num_stages) if (o := chosen_option(spec, s)))


def _ranked(spec: PipelineSpec, options: list[PipelineSpec]) -> list[tuple[float, PipelineSpec]]:
    """(bound, candidate), in the order of their bounds (ties: less recompute time first)."""
    bounds = [(lower_bound(folded(c)).value, _extra(c), i) for i, c in enumerate(options)]
    return [(b, options[i]) for b, _e, i in sorted(bounds)]


def _better(value: float, extra: float, best) -> bool:
    return best is None or value < best[0] - EPS or (value <= best[0] + EPS and extra < best[1] - EPS)


def _family(ranked) -> Compiled:
    best, reasons = None, []
    for bound, candidate in ranked:  # a bound of the folded form bounds the plan when exact
        if best is not None and exact_fold(candidate) and not _better(bound, _extra(candidate), best):
            continue
        try:
            compiled = compile_spec(candidate)
        except SchedError as error:
            reasons.append(f"recompute = {describe_choice(candidate)}: {error.diagnostics[0].message}")
            continue
        value = simulate(compiled.spec, compiled.dag, compiled.plan).makespan
        if _better(value, _extra(candidate), best):
            best = (value, _extra(candidate), compiled)
    if best is None:
        spec = ranked[0][1]
        raise SchedError([Diagnostic(f"{spec.schedule}: no recompute choice fits this pipeline",
                                     spec.source.span("limit") or spec.source.pipeline,
                                     tuple(Note(r) for r in reasons[:6]))])
    return best[2]


def _searched(spec: PipelineSpec, ranked) -> Compiled:
    """Each candidate searched for its share of SCREEN_SHARE of the budget (counted in work, as
    the search counts it, so every run and rank chooses the same); then the best of them, and the
    choice of no recompute when it fits, each searched for the whole budget (so the result is
    never worse than `search` without recompute), the shorter step kept."""
    best, tried = _screen(spec, ranked)
    finals = [best] + [(c, None) for _b, c in ranked if c is not best[0] and _extra(c) == 0][:1]
    kept = None
    for candidate, screened in finals:
        compiled = _search_long(spec, candidate, screened)
        if compiled is None:
            continue
        value = simulate(compiled.spec, compiled.dag, compiled.plan).makespan
        if _better(value, _extra(candidate), kept):
            kept = (value, _extra(candidate), compiled)
    compiled = kept[2]
    note = (f"; recompute = {describe_choice(compiled.spec)}, the best of {len(ranked)} choices that "
            f"fit ({tried} searched, the others no better by their bounds)")
    return replace(compiled, search=replace(compiled.search, found_by=compiled.search.found_by + note))


def _screen(spec: PipelineSpec, ranked):
    """((the best candidate, its short search's result), how many were searched)."""
    from ..search.local_search import search_order

    share = spec.search_time * SCREEN_SHARE / len(ranked)
    best, tried, failed = None, 0, None
    for bound, candidate in ranked:  # the search's figures are the folded form's, as the bounds
        if best is not None and not _better(bound, _extra(candidate), best):
            continue
        plain, tried = folded(candidate), tried + 1
        try:
            found = search_order(replace(plain, search_time=share), build_dag(plain))
        except SchedError as error:  # the search found no plan for this choice: weigh the others
            failed = error
            continue
        if _better(found.makespan, _extra(candidate), best):
            best = (found.makespan, _extra(candidate), candidate, found)
    if best is None:
        raise failed
    return best[2:], tried


def _search_long(spec: PipelineSpec, candidate: PipelineSpec, screened) -> Compiled | None:
    """`candidate` searched for the whole budget; the short search's plan (`screened`) when it
    was better or the long one found none; None when neither has a plan."""
    try:
        compiled = compile_spec(replace(candidate, search_time=spec.search_time))
    except SchedError:
        if screened is None:
            return None
        compiled = None
    if screened is not None and (compiled is None or compiled.search.makespan > screened.makespan + EPS):
        order = insert_recompute(candidate, ComputeOrder(screened.rows, screened.pairs))
        compiled = finish(candidate, build_dag(candidate), order, screened)
    return compiled


def _optimal(spec: PipelineSpec, ranked) -> Compiled:
    """Each candidate solved by CP-SAT unless its bound is no better than the best found; the
    budget is shared out in order (what earlier candidates did not get passes on)."""
    from ..search.exact import solve_exact

    best, floor, given = None, math.inf, 0.0
    for index, (bound, candidate) in enumerate(ranked):
        if best is not None and not _better(bound, _extra(candidate), best):
            floor = min(floor, bound)
            continue
        budget = max(0.5, (spec.search_time - given) / (len(ranked) - index))
        plain, given = folded(candidate), given + budget
        result = solve_exact(replace(plain, search_time=budget), build_dag(plain))
        floor = min(floor, bound if result.proven_bound is None else max(bound, result.proven_bound))
        if _better(result.makespan, _extra(candidate), best):
            best = (result.makespan, _extra(candidate), candidate, result)
    makespan, _extra_time, chosen, result = best
    exact = all(exact_fold(c) for _b, c in ranked)
    proof = ("proven optimal over every recompute choice" if floor >= makespan - EPS
             else f"proven bound over every recompute choice {floor:g}")
    if not exact:  # each W folded into its I: a proof about plans that run R, I, W back to back
        proof += " among plans that run each R, I and W back to back (a plan may be shorter)"
    found = replace(result, found_by=f"{result.found_by}; recompute = {describe_choice(chosen)}, "
                    f"{len(ranked)} choices weighed, {proof}",
                    proven_bound=min(floor, makespan) if exact else None)
    order = insert_recompute(chosen, ComputeOrder(result.rows, result.pairs))
    return finish(chosen, build_dag(chosen), order, found)
