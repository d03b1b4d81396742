"""Report layouts: a Plan + its records -> a `Report` (tables of shown cells, notes, details).

One builder per layout: the paper's Tables 5-8 and Figure 5 (our rows beside the paper's, matched
by id, see report/paper.py) and `generic` (rows x tasks, any matrix). Renderers (render.py) only
format a Report; every number and note is decided here.
"""

from __future__ import annotations

from typing import Any

from bertabl.errors import MatrixError
from bertabl.matrix.cells import cell_trials
from bertabl.matrix.plan import Plan, Row
from bertabl.orchestrate.record import Record, Status, status_of
from bertabl.paper import reference as paper
from bertabl.paper import tables
from bertabl.paper.tables import LAYOUTS, PAPER_BASELINE, PAPER_COLUMNS, Column
from bertabl.report.compare import (
    Comparison,
    Predictions,
    compare,
    detection_note,
    from_evaluate,
    mde_rule,
)
from bertabl.report.document import MISSING, CellStatus, Detail, Line, Notes, Report, Shown, Table
from bertabl.report.select import Cell, select_cell
from bertabl.report.significance import RESAMPLES, stalled
from bertabl.report.stats import ALPHA, bootstrap_ci
from bertabl.trial.pretrain import PretrainConfig

__all__ = ["LAYOUTS", "build_report", "infer_layout"]
SIGNIFICANT = "*"

LEAD_HEADINGS = {"table6": ["#L", "#H", "#A", "LM (ppl)"], "table8": ["MASK", "SAME", "RND"]}


def infer_layout(plan: Plan) -> str:
    """The layout a plan's report takes unless --layout says otherwise (paper/tables.py)."""
    matrix = plan.matrix
    variants = [v.name for v in matrix.pretrain.variants]
    return tables.infer_layout(matrix.report.layout, matrix.name, variants, matrix.finetune.tasks)


def build_report(
    plan: Plan,
    records: dict[str, Record],
    layout: str | None = None,
    ci: bool = False,
    predictions: Predictions | None = None,
) -> Report:
    """Everything the renderers show, for `layout` (default: the matrix's, or inferred). With
    `predictions`, cells are compared with the baseline per example (report/significance.py);
    without (or where a trial has none), over restarts."""
    layout = layout or infer_layout(plan)
    _check_paper_rows(plan, layout)
    builder = _Builder(plan, records, layout, ci, predictions or (lambda trial, split: None))
    if layout == "fig5":
        builder.figure5()
    else:
        builder.table()
    matrix = plan.matrix
    return Report(
        name=matrix.name,
        title=matrix.report.title or matrix.name,
        description=matrix.description,
        layout=layout,
        tables=builder.tables,
        notes=builder.notes.texts,
        rules=builder.rules(),
        details=builder.details,
        synthetic=any(matrix.spec(t).synthetic for t in matrix.finetune.tasks),
        figure=builder.figure,
        baseline=builder.baseline and builder.baseline.name,
    )


def _check_paper_rows(plan: Plan, layout: str) -> None:
    """report.paper_rows must name our variants and, in a paper table, that table's row ids
    (validation checked the inferred layout; --layout may ask for another)."""
    variants = [v.name for v in plan.matrix.pretrain.variants]
    problem = tables.paper_rows_problem(plan.matrix.report.paper_rows, variants, layout)
    if problem:
        raise MatrixError(problem)


class _Builder:
    def __init__(
        self,
        plan: Plan,
        records: dict[str, Record],
        layout: str,
        ci: bool,
        predictions: Predictions,
    ):
        self.plan, self.records, self.layout, self.ci = plan, records, layout, ci
        self.predictions = predictions
        self.restarts = plan.matrix.report.restarts
        self.tests_used: set[str] = set()  # which paired tests some cell's p-value came from
        self.notes = Notes()
        self.tables: list[Table] = []
        self.details: list[Detail] = []
        self.figure: dict[str, Any] | None = None
        self.expected_n = plan.matrix.finetune.restarts
        self.baseline: Row | None = None
        self.baseline_label: str | None = None
        self.paper_baseline_label: str | None = None
        self._cells: dict[tuple[str, Column], Cell] = {}
        self._stalled: dict[tuple[str, ...], int | None] = {}

    # -- cells ---------------------------------------------------------------------------------
    def cell(self, row: Row, column: Column) -> Cell | None:
        """Our cell for (row, column); None when the matrix does not fine-tune the task."""
        if column.task not in self.plan.matrix.finetune.tasks:
            return None
        key = (row.name, column)
        if key not in self._cells:
            metric = self.plan.matrix.metric_for(column.task)
            trials = cell_trials(self.plan, row, column.task)
            cell = select_cell(trials, self.records, column.task, metric, column.split)
            if cell.status is CellStatus.NO_SPLIT:
                cell.status = self._test_status(trials) or cell.status
            self._cells[key] = cell
        return self._cells[key]

    def _test_status(self, trials: list) -> CellStatus | None:
        """Why a planned test-split trial of these fine-tunes left no test score (failed or not
        run yet), so the cell does not read as "no test split" when there is one."""
        ids = {t.id for t in trials}
        for test in self.plan.tests:
            if ids & set(test.config.trials):
                status = status_of(self.records.get(test.id))
                if status is Status.DONE:
                    return None
                return CellStatus.TEST_FAILED if status is Status.FAILED else CellStatus.PENDING
        return None

    def ours(self, row: Row, column: Column, baseline: Row | None, delta: bool) -> Shown:
        cell = self.cell(row, column)
        base_cell = baseline and self.cell(baseline, column)
        comparison = self._compare(cell, base_cell, row is baseline, column.split)
        p = comparison and comparison.p
        self._detail(row, column, cell, comparison)
        if cell is None:
            return Shown(notes=[self.notes.add(MISSING["not_planned"])])
        if cell.mean is None:
            return Shown(notes=[self.notes.add(MISSING[cell.status])])
        value = cell.headline(self.restarts)
        std = None if cell.std is None or self.restarts == "best" else 100 * cell.std
        shown = Shown(value=100 * value, std=std)
        if self.ci:
            interval = bootstrap_ci(cell.values)
            shown.ci = interval and (100 * interval[0], 100 * interval[1])
        if len(cell.values) < self.plan.matrix.finetune.protocol(column.task).restarts:
            shown.n = len(cell.values)
        shown.failed, shown.diverged = cell.failed, cell.diverged
        shown.stalled = self.stalled(cell) or 0
        base = baseline and self.cell(baseline, column)
        if delta and row is not baseline and base is not None and base.mean is not None:
            shown.delta = 100 * (value - base.headline(self.restarts))
        if p is not None and p < ALPHA:
            shown.mark = SIGNIFICANT
        note = comparison and detection_note(comparison)
        if note:
            shown.notes.append(self.notes.add(note))
        return shown

    def stalled(self, cell: Cell) -> int | None:
        """How many of the cell's restarts stalled: their dev predictions do no better than a
        constant predictor (report/significance.py). Always judged on dev, whatever split the
        cell shows: stalling is a property of the fine-tuning run. None: no predictions kept."""
        key = tuple(cell.trial_of)
        if key not in self._stalled:
            lines = [self.predictions(trial, "dev") for trial in cell.trial_of]
            if not lines or any(x is None for x in lines) or from_evaluate(self.plan, cell):
                self._stalled[key] = None
            else:
                spec = self.plan.matrix.spec(cell.task)
                self._stalled[key] = sum(stalled(spec, cell.metric, x) for x in lines)
        return self._stalled[key]

    def _compare(
        self, cell: Cell | None, base: Cell | None, is_baseline: bool, split: str = "dev"
    ) -> Comparison | None:
        """The cell against the baseline's (report/compare.py); None for the baseline itself."""
        if is_baseline or cell is None or base is None:
            return None
        comparison = compare(self.plan, cell, base, split, self.predictions)
        if comparison is not None and (comparison.test == "bootstrap" or comparison.p is not None):
            self.tests_used.add(comparison.test)
        return comparison

    def _detail(
        self, row: Row, column: Column, cell: Cell | None, comparison: Comparison | None
    ) -> None:
        if cell is None:
            return
        trials = [self.plan.trial(i) for i in cell.trial_ids]
        # a multi-task view's compute is its shared trial's (it trains nothing of its own)
        trials = [self.plan.trial(t.view_of) if t.view_of else t for t in trials]
        interval = bootstrap_ci(cell.values) if self.ci else None
        self.details.append(
            Detail(
                row=row.name,
                row_label=row.label,
                column=column.heading,
                task=column.task,
                metric=cell.metric,
                split=column.split,
                status=cell.status,
                n=len(cell.values),
                mean=cell.mean,
                best=cell.best,
                std=cell.std,
                median=cell.median,
                ci=interval,
                failed=cell.failed,
                diverged=cell.diverged,
                stalled=self.stalled(cell),
                p_vs_baseline=comparison and comparison.p,
                difference_ci=comparison and comparison.difference_ci,
                mde=comparison and comparison.mde,
                false_marks=comparison and comparison.false_marks,
                variation=comparison and comparison.variation,
                grid_point=cell.grid_point,
                hours=cell.seconds / 3600,
                tokens=sum(t.tokens for t in trials),
                flops=sum(t.flops for t in trials),
                trial_ids=cell.trial_ids,
            )
        )

    # -- tables --------------------------------------------------------------------------------
    @property
    def columns_used(self) -> list[Column]:
        return [] if self.layout == "fig5" else self.columns()

    def columns(self) -> list[Column]:
        ft, metric_for = self.plan.matrix.finetune, self.plan.matrix.metric_for
        if self.layout == "generic":
            tested = {t.config.task for t in self.plan.tests if "test" in t.config.splits}
            columns = []
            for t in ft.tasks:
                columns.append(Column(t, f"{t} ({metric_for(t)})", t))
                if t in tested:  # scored on its labeled test split after selection
                    columns.append(Column(f"{t}/test", f"{t} test ({metric_for(t)})", t, "test"))
            return columns
        # Tasks the paper's table has no column for (e.g. a stand-in at tiny scale) come after
        # its columns, so nothing that ran is left out of the report.
        known = {c.task for c in PAPER_COLUMNS[self.layout]}
        extra = [
            Column(t, f"{t} ({metric_for(t)}; not in the paper)", t)
            for t in ft.tasks
            if t not in known
        ]
        return [*PAPER_COLUMNS[self.layout], *extra]

    def paper_id(self, row: Row) -> str | None:
        """The paper row our row stands beside: report.paper_rows, else its name, else (Table
        6) the id of its size."""
        rows = paper.paper_rows(self.layout)
        mapped = self.plan.matrix.report.paper_rows.get(row.name, row.name)
        if mapped in rows:
            return mapped
        config = self._pretrain_config(row)
        if self.layout == "table6" and config is not None:
            model = config.model
            size_id = paper.table6_id(model.layers, model.hidden, model.heads)
            return size_id if size_id in rows else None
        return None

    def table(self) -> None:
        columns = self.columns()
        rows = self.plan.rows
        is_paper = self.layout != "generic"
        baseline = rows[0] if rows else None
        paper_rows = paper.paper_rows(self.layout) if is_paper else {}
        paper_base = paper_rows.get(PAPER_BASELINE.get(self.layout, ""))
        if is_paper:
            matched = [r for r in rows if self.paper_id(r) == PAPER_BASELINE[self.layout]]
            baseline = matched[0] if matched else baseline
        self.baseline = baseline
        self.baseline_label = baseline.label if baseline else None
        self.paper_baseline_label = paper_base.label if paper_base else None
        header = ["Row", *LEAD_HEADINGS.get(self.layout, []), *(c.heading for c in columns)]
        table = Table(caption="", header=header, lines=[])
        lead = len(LEAD_HEADINGS.get(self.layout, []))
        if is_paper:
            metrics = paper.reference()[self.layout]["metrics"]
            for i, column in enumerate(columns):
                if column.task not in self.plan.matrix.finetune.tasks:
                    continue
                ours = self.plan.matrix.metric_for(column.task)
                theirs = metrics.get(column.key)
                if theirs not in (ours, None):
                    note = (
                        f"{column.heading}: our cells use {ours}, the paper's {theirs}; set "
                        f"finetune.selection_metric.{column.task} = '{theirs}' to match"
                    )
                    table.header_notes[1 + lead + i] = [self.notes.add(note)]
        for row in rows:
            cells = [*self._lead_ours(row)]
            cells += [self.ours(row, c, baseline, delta=is_paper) for c in columns]
            table.lines.append(Line(row.label, "ours", cells))
            pid = self.paper_id(row) if is_paper else None
            if pid is not None:
                prow = paper_rows[pid]
                cells = [*self._lead_paper(prow)]
                for column in columns:
                    value = prow.values.get(column.key)
                    if value is None:
                        cells.append(Shown(notes=[self.notes.add(MISSING["not_in_paper"])]))
                        continue
                    base = paper_base.values.get(column.key) if paper_base else None
                    delta = value - base if base is not None and prow is not paper_base else None
                    cells.append(Shown(value=float(value), delta=delta))
                table.lines.append(Line(f"{prow.label} (paper)", "paper", cells))
        self.tables.append(table)

    def _pretrain_config(self, row: Row) -> PretrainConfig | None:
        """The row's pre-training settings; None for a row that fine-tunes a checkpoint."""
        source = self.plan.model(row.pretrain_id)
        return source.config.pretrain if hasattr(source, "config") else None

    def _lead_ours(self, row: Row) -> list[Shown]:
        config = self._pretrain_config(row)
        if config is None:  # a checkpoint row: not pre-trained here, no settings to show
            headings = LEAD_HEADINGS.get(self.layout, [])
            if not headings:  # no lead cell to carry the note: numbering it would orphan it
                return []
            note = self.notes.add(MISSING["checkpoint"])
            return [Shown(notes=[note]) for _ in headings]
        if self.layout == "table6":
            model = config.model
            sizes = [Shown(text=str(getattr(model, k))) for k in ("layers", "hidden", "heads")]
            record = self.records.get(row.pretrain_id)
            if record is None or not record.done:
                return [*sizes, Shown(notes=[self.notes.add(MISSING["ppl_pending"])])]
            ppl = record.score("heldout_perplexity")
            if ppl is None:
                return [*sizes, Shown(notes=[self.notes.add(MISSING["no_ppl"])])]
            return [*sizes, Shown(value=ppl, digits=2)]
        if self.layout == "table8":
            masking = config.masking
            return [
                Shown(text=f"{round(100 * getattr(masking, k))}%")
                for k in ("mask", "same", "random")
            ]
        return []

    def _lead_paper(self, prow: paper.PaperRow) -> list[Shown]:
        v = prow.values
        if self.layout == "table6":
            sizes = [Shown(text=str(v[k])) for k in ("layers", "hidden", "heads")]
            return [*sizes, Shown(value=float(v["lm_ppl"]), digits=2)]
        if self.layout == "table8":
            return [Shown(text=f"{v[k]}%") for k in ("mask_pct", "same_pct", "rnd_pct")]
        return []

    # -- Figure 5 ------------------------------------------------------------------------------
    def figure5(self) -> None:
        """Rows are variants, columns pre-training steps; the paper's plotted points beside."""
        tasks = self.plan.matrix.finetune.tasks
        task = "mnli" if "mnli" in tasks else tasks[0]
        column = Column("mnli", f"{task} ({self.plan.matrix.metric_for(task)})", task)
        variants: dict[str, dict[int, Row]] = {}
        for row in self.plan.rows:
            base, _, step = row.name.partition("@")
            config = self._pretrain_config(row)
            step_n = int(step) if step else (config.steps if config else 0)
            variants.setdefault(base, {})[step_n] = row
        steps = sorted({s for by_step in variants.values() for s in by_step})
        table = Table(
            caption=f"ours: {column.heading} by pre-training steps",
            header=["Row", *(f"{s:,} steps" for s in steps)],
            lines=[],
        )
        series = {}
        for by_step in variants.values():
            cells, points = [], []
            for step in steps:
                row = by_step.get(step)
                if row is None:
                    cells.append(Shown(notes=[self.notes.add(MISSING["not_planned"])]))
                    continue
                shown = self.ours(row, column, None, delta=False)
                cells.append(shown)
                if shown.value is not None:
                    points.append((step, shown.value, shown.std or 0.0))
            label = by_step[min(by_step)].label.rsplit(" (", 1)[0]
            table.lines.append(Line(label, "ours", cells))
            series[label] = points
        self.tables.append(table)
        ref = paper.figure5_points()
        note = self.notes.add(
            "read from the paper's vector figure (arXiv v2), not printed as numbers: "
            "single source, unverified"
        )
        paper_table = Table(
            caption="paper: MNLI-m dev accuracy by thousands of pre-training steps",
            header=["Series", *(f"{k}k" for k in ref["steps_k"])],
            lines=[
                Line(
                    f"BERT-Base, {name.upper()} (paper)",
                    "paper",
                    [Shown(value=float(v)) for v in ref[name]],
                )
                for name in ("mlm", "ltr")
            ],
            header_notes={0: [note]},
        )
        self.tables.append(paper_table)
        self.figure = {
            "metric": column.heading,
            "ours": series,
            "paper": {
                name.upper(): list(zip(ref["steps_k"], ref[name], strict=True))
                for name in ("mlm", "ltr")
            },
        }

    # -- the rule --------------------------------------------------------------------------------
    def rules(self) -> list[str]:
        n = self.expected_n
        if self.restarts == "best":
            shown = (
                "as the score of its restart that is best on dev (the paper's GLUE protocol; "
                f"the matrix asks for {n} restarts, fewer are shown as n=k; means are under "
                "Cells in detail)"
            )
        else:
            shown = (
                f"as mean ± sample std over its finished restarts (the matrix asks for {n}; "
                "fewer are shown as n=k)"
            )
        rules = [
            "Cells: the dev score (%) of the grid point with the best mean dev score over its "
            f"restarts (ties: the earlier grid point in matrix order), {shown}. "
            "Failed and diverged (non-finite score) restarts are counted beside the cell, not "
            "averaged; stalled restarts (dev predictions no better than a constant predictor "
            "— the majority label, no entity, an empty answer — at p < 0.05 in a one-sided "
            "paired bootstrap) are counted beside it and kept in the mean, since leaving them "
            "out would flatter unstable rows. Medians are under Cells in detail. A missing "
            "cell is — with a note, never zero."
        ]
        if self.layout == "table7" or any(c.split == "test" for c in self.columns_used):
            rules.append(
                "Test scores: the grid point selected on dev, scored on the test split after "
                "selection (never used to select), over the same restarts as the dev cell."
            )
        if self.baseline_label and self.layout != "fig5":
            if self.layout != "generic":
                rules.append(
                    f"(±x.x): difference to the baseline row as the paper reads it: ours to "
                    f"{self.baseline_label}, the paper's to its {self.paper_baseline_label} row."
                )
            if "bootstrap" in self.tests_used:
                rules.append(
                    f"{SIGNIFICANT}: differs from {self.baseline_label} at p < {ALPHA} in a "
                    "two-sided paired bootstrap over the dev examples (both rows' predictions on "
                    f"the same examples, {RESAMPLES:,} seeded resamples, the metric's difference "
                    "averaged over paired restarts: restart i of both rows fine-tunes with the "
                    "same seed)."
                )
            if "sign_flip" in self.tests_used or not self.tests_used:
                rules.append(
                    f"{SIGNIFICANT}: differs from {self.baseline_label} at p < {ALPHA} in a "
                    "two-sided exact paired sign-flip (permutation) test over restarts (restart "
                    "i of both rows fine-tunes with the same seed, so restarts pair up), where "
                    "no predictions were kept. It assumes nothing about the score distribution "
                    "but is weak with few restarts: the smallest attainable p is 2/2^n, so with "
                    "5 or fewer restarts nothing can be marked."
                )
        if self.tests_used:
            rules.append(mde_rule(self.baseline_label, self.tests_used))
        if self.ci:
            rules.append(
                "[lo, hi]: seeded percentile bootstrap 95% interval of the mean over restarts "
                "(10,000 resamples, seed 0); with few restarts it under-covers."
            )
        return rules
