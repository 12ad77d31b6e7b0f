"""A compact step x rank text grid of per-rank instruction lists, for terminals and errors.

Rows are ranks, columns are list positions (steps); `focus` marks one cell with `>...<` and, with
a window, shows only the columns and ranks around it.
"""

from __future__ import annotations

from ..ir import Instr, format_instr


def format_grid(rows: tuple[tuple[Instr, ...], ...], focus: tuple[int, int] | None = None,
                columns: int = 6, neighbours: int = 2) -> str:
    """The grid of `rows`; with `focus`, a window of +-`columns` steps and +-`neighbours` ranks."""
    first_col, last_col = 0, max((len(r) for r in rows), default=0)
    shown_ranks = range(len(rows))
    if focus is not None:
        rank, index = focus
        index = max(index, 0)
        first_col, last_col = max(0, index - columns), min(last_col, index + columns + 1)
        shown_ranks = range(max(0, rank - neighbours), min(len(rows), rank + neighbours + 1))
    cells = {}
    for r in shown_ranks:
        for i in range(first_col, min(last_col, len(rows[r]))):
            text = format_instr(rows[r][i])
            cells[r, i] = f">{text}<" if focus == (r, i) else text
    widths = {i: max([len(cells.get((r, i), "")) for r in shown_ranks] + [len(str(i))])
              for i in range(first_col, last_col)}
    label = max(len(f"rank {r}") for r in shown_ranks) if shown_ranks else 4
    head = " " * label + " | " + " ".join(str(i).rjust(widths[i]) for i in range(first_col, last_col))
    lines = [head.rstrip()]
    for r in shown_ranks:
        body = " ".join(cells.get((r, i), ".").rjust(widths[i]) for i in range(first_col, last_col))
        lines.append(f"rank {r}".rjust(label) + " | " + body)
    return "\n".join(lines) + "\n"
