"""The same model under another family or placement: a checked spec rewritten, its stages re-cut.

`with_family(spec, family)` and `with_placement(spec, placement)` are what `schedule = auto`,
`placement = any` and `schedc compare` use to run one pipeline under several families: the file's
settings re-checked under the new family (a located error where they do not fit), the file's stages
re-cut into the new number of stages (`lang.costs.recut_costs`), so the same layers are cut
differently. (Language work on a checked spec; it lives here, beside its user choose.py, since
the lang room is full.)
"""

from __future__ import annotations

from dataclasses import replace

from ..errors import Diagnostic, SchedError
from ..lang.costs import recut_costs, recut_sizes
from ..lang.recompute import recut_recompute
from ..lang.spec import (FAMILY_PLACEMENT, OVERLAP_FAMILIES, PLACEMENTS, SEARCHES, SPLIT_FAMILIES,
                   PipelineSpec, check_pipeline)
from ..lang.syntax import PipelineAST, Setting

_FAMILY_KEYS = ("schedule", "placement", "chunks", "split_backward", "overlap")


def with_family(spec: PipelineSpec, family: str, same_model: bool = True) -> PipelineSpec:
    """`spec` with another schedule family and that family's placement and defaults.

    When the spec came from a file, the file's settings are re-checked under the new family (a
    located error where they do not fit it). With `same_model` (the default), the new family runs
    the same model, the same layers cut differently: its per-stage costs and activation sizes
    are the file's stages re-cut into the new number of stages (`recut_costs`), so a family with
    k times the stages runs each at 1/k and per-stage overrides follow the layers they describe,
    whatever stages the new placement has. Without it, per-stage overrides apply by stage number
    (a located error for a stage the new placement lacks); a spec that did not come from a file
    then uses stage 0's cost and activation size for every stage.
    """
    new = _respecified(spec, family, keep_overrides=not same_model)
    return _same_model(spec, new) if same_model else new


def _check_split_costs(spec: PipelineSpec, costs) -> None:
    """A file written for an unsplit family may have W > B somewhere; a split family needs W <= B."""
    for stage, cost in enumerate(costs):
        if cost.weight > cost.backward:
            raise SchedError([Diagnostic(
                f"stage {stage}: W = {cost.weight:g} is larger than the full backward B = "
                f"{cost.backward:g}; a family that splits the backward needs W <= B",
                spec.source.pipeline)])


def _same_model(spec: PipelineSpec, new: PipelineSpec) -> PipelineSpec:
    """`new` (another family or placement of `spec`) running the same model: `spec`'s stages re-cut
    into `new`'s (`recut_costs`): costs, activation and parameter sizes by the share of the model
    each new stage covers, the weight-gradient fraction from the stage a new stage starts in."""
    stages = new.num_stages
    costs = recut_costs(spec.costs, stages)
    if new.split_backward:
        _check_split_costs(spec, costs)
    old = len(spec.weight_grad)
    return replace(new, costs=costs, activations=recut_sizes(spec.activations, stages),
                   parameters=recut_sizes(spec.parameters, stages) if spec.parameters else (),
                   weight_grad=tuple(spec.weight_grad[t * old // stages] for t in range(stages)) if old else (),
                   **recut_recompute(spec, stages))


def _respecified(spec: PipelineSpec, family: str, keep_overrides: bool = True) -> PipelineSpec:
    """The spec under `family` (see `with_family`); `search`/`optimal` keep a searching file's
    placement, and otherwise choose any placement (the same model cut as a linear pipeline's
    stages)."""
    if family in SEARCHES and spec.schedule in SEARCHES:
        return replace(spec, schedule=family)
    if family in SEARCHES:  # each placement is cut from this spec's stages (with_placement)
        return replace(spec, schedule=family, split_backward=True, order=None,
                       overlap=family in OVERLAP_FAMILIES, placements=PLACEMENTS)
    ast = spec.source.ast
    if ast is not None:
        return check_pipeline(_ast_with_family(ast, family, spec, keep_overrides))
    placement = FAMILY_PLACEMENT[family]
    chunks = {"interleaved": max(2, spec.chunks), "v": 2}.get(placement, 1)
    stages = spec.ranks * chunks
    return replace(spec, schedule=family, placement=placement, chunks=chunks,
                   split_backward=family in SPLIT_FAMILIES, overlap=family in OVERLAP_FAMILIES,
                   costs=(spec.costs[0],) * stages, activations=(spec.activations[0],) * stages,
                   weight_grad=spec.weight_grad[:1] * stages, parameters=spec.parameters[:1] * stages,
                   order=None, **recut_recompute(spec, stages))


def _ast_with_family(ast: PipelineAST, family: str, spec: PipelineSpec,
                     keep_overrides: bool = True) -> PipelineAST:
    settings = [s for s in ast.settings if s.key not in _FAMILY_KEYS]
    where = ast.name_span
    settings.append(Setting("schedule", family, where, where, where))
    if family == "interleaved" and spec.placement == "interleaved":
        settings.append(Setting("chunks", str(spec.chunks), where, where, where))
    blocks = ast.blocks if keep_overrides else tuple(replace(b, overrides=()) for b in ast.blocks)
    return replace(ast, settings=tuple(settings), blocks=blocks, orders=())


def with_placement(spec: PipelineSpec, placement: str) -> PipelineSpec:
    """`spec` on another placement, the same model re-cut into its stages (as `with_family` does)."""
    ast = spec.source.ast
    if ast is not None:
        settings = [s for s in ast.settings if s.key not in ("placement", "chunks", "schedule")]
        where = ast.name_span
        settings += [Setting("placement", placement, where, where, where),
                     Setting("schedule", spec.schedule, where, where, where)]
        blocks = tuple(replace(b, overrides=()) for b in ast.blocks)  # re-cut below instead
        new = check_pipeline(replace(ast, settings=tuple(settings), blocks=blocks, orders=()))
        new = replace(new, split_backward=spec.split_backward, overlap=spec.overlap,
                      search_time=spec.search_time, seed=spec.seed)
    else:
        chunks = {"interleaved": 2, "v": 2}.get(placement, 1)
        stages = spec.ranks * chunks
        new = replace(spec, placement=placement, chunks=chunks, placements=(),
                      costs=spec.costs[:1] * stages, activations=spec.activations[:1] * stages,
                      weight_grad=spec.weight_grad[:1] * stages,
                      parameters=spec.parameters[:1] * stages, **recut_recompute(spec, stages))
    return _same_model(spec, new)
