"""The dependency DAG through graphviz: ops clustered by rank, cross-rank edges dashed red.

Large pipelines can be drawn in a window: only the ops of some ranks and microbatches.
"""

from __future__ import annotations

from ..dag import Dag
from ..errors import Diagnostic, SchedError
from ..ir import Instr, format_instr

class DotMissing(SchedError):
    """The `dot` program is not installed (the .dot source can still be written)."""


FILL = {"F": "#c6dbef", "B": "#fcbba1", "I": "#fdd0a2", "W": "#c7e9c0", "R": "#dadaeb"}


def _graphviz():
    try:
        import graphviz
    except ImportError:
        raise SchedError([Diagnostic("drawing the DAG needs the graphviz Python package: "
                                     "`pip install graphviz` (or `pip install 'schedc[graphviz]'`)")]) from None
    return graphviz


def build_dot(dag: Dag, ranks: set[int] | None = None, microbatches: set[int] | None = None):
    """A `graphviz.Digraph` of the DAG, restricted to the given ranks and microbatches."""
    graphviz = _graphviz()
    spec = dag.spec

    def shown(op: Instr) -> bool:
        return ((ranks is None or spec.rank_of(op.direction, op.stage) in ranks)
                and (microbatches is None or op.microbatch in microbatches))

    dot = graphviz.Digraph(spec.name, graph_attr={"rankdir": "LR", "label": f"{spec.name}: dependency DAG",
                                                  "fontname": "Helvetica"},
                           node_attr={"shape": "box", "style": "filled,rounded", "fontname": "Helvetica",
                                      "fontsize": "10"})
    by_rank: dict[int, list[Instr]] = {}
    for op in dag.preds:
        if shown(op):
            by_rank.setdefault(spec.rank_of(op.direction, op.stage), []).append(op)
    for rank in sorted(by_rank):
        with dot.subgraph(name=f"cluster_rank{rank}") as cluster:
            cluster.attr(label=f"rank {rank}", style="rounded", color="#888888")
            for op in sorted(by_rank[rank]):
                cluster.node(format_instr(op), fillcolor=FILL[op.kind.value])
    for producer, consumer in dag.edges():
        if shown(producer) and shown(consumer):
            cross = dag.is_cross_rank(producer, consumer)
            dot.edge(format_instr(producer), format_instr(consumer),
                     **({"style": "dashed", "color": "#cc3333"} if cross else {}))
    return dot


def render_dot(dot, fmt: str) -> bytes:
    """Render through the `dot` program; raises `SchedError` naming how to install it."""
    graphviz = _graphviz()
    try:
        return dot.pipe(format=fmt)
    except graphviz.ExecutableNotFound:
        raise DotMissing([Diagnostic("the graphviz `dot` program is not installed: "
                                     "`apt-get install graphviz` (Debian/Ubuntu), `brew install graphviz` "
                                     "(macOS), or see graphviz.org/download")]) from None
