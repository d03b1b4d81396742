"""How the command line prints tables: whole, whatever reads them.

On a terminal a table fits the terminal's width (text cells wrap; ids never do). Elsewhere (a
pipe, `| less`, a CI log) rich assumes 80 columns and cuts every cell that does not fit with an
ellipsis (trial ids, row names, FLOPs, grid points): there a table prints at its natural width.
"""

from __future__ import annotations

from rich.console import Console, RenderableType
from rich.measure import Measurement
from rich.table import Table

UNBOUNDED = 1_000_000  # columns a table may take when no terminal limits its width
# The columns of words that give way on a narrow terminal (they wrap, a long word folds); the
# others hold ids (what `bertabl resume` and reports refer to) and numbers, kept on one line.
TEXT = ("rows", "task", "head", "recipe", "from", "what", "progress", "description")


def show(console: Console, *renderables: RenderableType) -> None:
    """Print `renderables` (tables, and the titles beside them) on `console`, tables whole: on a
    terminal as narrow as the terminal but never narrower than their longest words (a terminal
    too narrow for those wraps the lines itself), elsewhere at their natural width."""
    unbounded = console.options.update_width(UNBOUNDED)
    sizes = [Measurement.get(console, unbounded, r) for r in renderables]
    if console.is_terminal:
        width = max(m.minimum for m in sizes)
    else:
        width = max(m.maximum for m in sizes)
    if width <= console.width:
        console.print(*renderables)
    else:
        Console(file=console.file, width=width).print(*renderables)


def columns_table(*columns: str) -> Table:
    """A borderless table with these column headers; on a narrow terminal its TEXT columns
    wrap, and a word too long for one folds onto the next line rather than being cut."""
    table = Table(box=None, header_style="bold")
    for column in columns:
        table.add_column(column, no_wrap=column not in TEXT, overflow="fold")
    return table


def si(n: float) -> str:
    """`n` with an SI prefix: 120.5k, 4.8M, 2.0G."""
    for unit, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f}{unit}"
    return str(int(n))
