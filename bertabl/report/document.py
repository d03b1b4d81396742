"""What a report is, whatever it is rendered as: tables of shown cells, numbered notes, the
rules by which cells were computed, and every cell in detail. Layouts (layouts.py) build one;
renderers (render.py) format it."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # a type only: renderers need not import the statistics
    from bertabl.report.power import Variation


class CellStatus(StrEnum):
    """Where a report cell stands (MISSING says it in words where the cell shows no value)."""

    DONE = "done"  # every trial of the cell finished
    PARTIAL = "partial"  # some restarts missing
    PENDING = "pending"  # nothing finished yet
    FAILED = "failed"  # every finished trial failed
    BLOCKED = "blocked"  # its pre-training did not finish
    NO_SPLIT = "no_split"  # finished, but nothing was evaluated on the split shown
    TEST_FAILED = "test_failed"  # its test-split trial failed


MISSING = {
    CellStatus.PENDING: "pending: not run yet",
    CellStatus.PARTIAL: "pending: not run yet",
    CellStatus.FAILED: "failed: every trial of the cell failed (see its trials' record.json)",
    CellStatus.BLOCKED: "blocked: its pre-training did not finish",
    CellStatus.NO_SPLIT: "no test-split result: only the dev split is available offline "
    "(CoNLL-2003 eng.testa); the paper's test F1 is on eng.testb",
    CellStatus.TEST_FAILED: "failed: the cell's test-split trial failed (see its record.json; "
    "`bertabl run` again retries it)",
    "not_planned": "not planned: the matrix does not fine-tune this task",
    "not_in_paper": "the paper prints no value here",
    "no_ppl": "no held-out perplexity in the pre-training record (recorded by newer bertabl "
    "versions; re-run the pre-training trial to get it)",
    "ppl_pending": "pending: the pre-training trial has not finished",
    "checkpoint": "a released or saved checkpoint (the row's `from`), not pre-trained here",
}


@dataclass
class Shown:
    """One table cell as shown: a score (percent) with its extras, or literal text, or missing."""

    value: float | None = None
    std: float | None = None
    ci: tuple[float, float] | None = None
    delta: float | None = None
    mark: str = ""
    n: int | None = None  # restarts, shown only when fewer than the matrix's `restarts`
    failed: int = 0  # failed restarts of the selected grid point
    diverged: int = 0  # its restarts with a non-finite score
    stalled: int = 0  # its restarts no better than a constant predictor (in the mean)
    digits: int = 1
    text: str | None = None
    notes: list[int] = field(default_factory=list)


@dataclass
class Line:
    label: str
    source: str  # "ours" | "paper"
    cells: list[Shown]


@dataclass
class Table:
    caption: str
    header: list[str]
    lines: list[Line]
    header_notes: dict[int, list[int]] = field(default_factory=dict)  # column index -> notes


@dataclass
class Detail:
    """One of our cells in full (the Markdown's detail table, the CSV and the JSON)."""

    row: str
    row_label: str
    column: str
    task: str
    metric: str
    split: str
    status: CellStatus
    n: int
    mean: float | None
    best: float | None  # the restart best on dev (its score on this split)
    std: float | None
    median: float | None
    ci: tuple[float, float] | None
    failed: int
    diverged: int
    stalled: int | None  # None: no predictions kept to tell
    p_vs_baseline: float | None
    # the per-example paired bootstrap's 95% interval of (this cell - the baseline's), 0-1 scale
    difference_ci: tuple[float, float] | None
    # the minimum detectable effect (0-1 scale, report/power.py): None where not compared or
    # where the test can mark nothing; and, where restart noise alone earns marks, how often
    # the test would mark a zero difference (else None)
    mde: float | None
    false_marks: float | None
    variation: Variation | None  # what both come from (report/power.py)
    grid_point: dict[str, Any] | None
    hours: float
    tokens: int
    flops: float
    trial_ids: list[str]


@dataclass
class Report:
    name: str
    title: str
    description: str
    layout: str
    tables: list[Table]
    notes: list[str]  # footnote i+1
    rules: list[str]  # how cells were computed, one paragraph each
    details: list[Detail]
    synthetic: bool
    figure: dict[str, Any] | None = None  # Figure 5's series, for plot.py
    baseline: str | None = None  # the row (name) cells are compared with


class Notes:
    """Numbered footnotes; the same text gets the same number."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    def add(self, text: str) -> int:
        if text not in self.texts:
            self.texts.append(text)
        return self.texts.index(text) + 1
