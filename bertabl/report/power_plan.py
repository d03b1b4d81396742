"""`bertabl power`: from a finished (pilot) run, what each comparison with the baseline row could
detect, how many restarts (or dev examples) a difference of D points needs, and what the new
trials would cost at the run's own speed (its records' trial seconds).

The cells, baselines and tests are the report's (layouts.build_report), so the numbers are the
ones its MDE column shows; report/power.py does the statistics.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from bertabl.errors import UserError
from bertabl.matrix import Matrix, Plan, build_plan
from bertabl.matrix.load import tomllib
from bertabl.orchestrate.lookup import plan_of_run
from bertabl.orchestrate.record import Record, Status, status_of
from bertabl.orchestrate.store import RunStore
from bertabl.report import power
from bertabl.report.build import predictions_of
from bertabl.report.document import Detail
from bertabl.report.layouts import build_report
from bertabl.report.power import MAX_RESTARTS, POWER, Variation


@dataclass(frozen=True)
class CellPower:
    """One compared cell: what it could detect now, and what `effect` would need."""

    row_label: str
    column: str
    task: str
    test: str  # power.BOOTSTRAP | power.SIGN_FLIP
    examples: int  # dev examples per restart (0: unknown, the sign flip over restart scores)
    restarts: int  # paired restarts compared
    mde: float | None  # now, 0-1 scale; None: the test can mark nothing
    false_marks: float | None  # where restart noise alone earns marks (Variation.unreliable)
    mde_at: float | None = None  # at the asked --restarts
    power_now: float | None = None  # of `effect`, at this run's restarts
    power_at: float | None = None  # of `effect`, at the asked --restarts
    restarts_needed: int | None = None  # for `effect`; None: no number up to MAX_RESTARTS
    examples_needed: int | None = None  # for `effect` at this run's restarts, where restarts fail
    more_hours: float | None = None  # the new trials of this cell and its baseline, for the need


@dataclass(frozen=True)
class Proposal:
    """`--set`s for `bertabl plan`/`run`, and the trials they add to this run."""

    sets: list[str]
    new_trials: int
    hours: float


@dataclass
class PowerPlan:
    name: str
    run_dir: Path
    baseline: str  # its label
    command: str  # `bertabl plan <matrix>` with the run's own overrides
    effect: float | None  # 0-1 scale
    restarts: int | None
    cells: list[CellPower] = field(default_factory=list)
    not_compared: int = 0  # cells not compared yet (pending, failed)
    seconds_per_trial: float = 0.0
    proposal: Proposal | None = None  # every task at the most restarts any cell needs
    per_task: Proposal | None = None  # each task at what its own cells need, where that differs
    enough_now: int | None = None  # with --effect: the most any cell needs, when the run has it


def power_plan(run_dir: Path, effect: float | None = None, restarts: int | None = None):
    """The PowerPlan of a finished run (`effect` in points, as the report shows scores)."""
    if effect is not None and not 0 < effect <= 100:
        raise UserError(f"--effect {effect:g}: a difference in points, above 0 and at most 100")
    store = RunStore(run_dir)
    manifest = store.manifest()  # the standard "not a run directory" error
    plan, records = plan_of_run(store), store.records()
    seconds = _seconds_by_trial(records)
    if not seconds:
        raise UserError(
            f"{run_dir}: no finished fine-tuning trial yet, so no variation to measure; run it "
            f"first (bertabl run {manifest['source']['path']}) or wait for it to finish"
        )
    report = build_report(plan, records, predictions=predictions_of(store))
    compared = [d for d in report.details if d.variation is not None]
    if not compared:
        raise UserError(
            f"{run_dir}: no cell could be compared with its baseline row yet (each needs a "
            "finished restart paired with one of the baseline's); run the matrix to the end"
        )
    result = PowerPlan(
        name=plan.matrix.name,
        run_dir=run_dir,
        baseline=next(d.row_label for d in report.details if d.row == report.baseline),
        command=_plan_command(manifest["source"]),
        effect=None if effect is None else effect / 100,
        restarts=restarts,
        not_compared=sum(d.row != report.baseline and d.variation is None for d in report.details),
        seconds_per_trial=statistics.fmean(seconds.values()),
    )
    baseline_trials = {
        (d.column, d.split): d.trial_ids for d in report.details if d.row == report.baseline
    }
    for detail in compared:
        cell = _cell_power(detail.variation, detail, result.effect, restarts)
        if cell.restarts_needed is not None:
            trials = [*detail.trial_ids, *baseline_trials[(detail.column, detail.split)]]
            planned = plan.matrix.finetune.protocol(detail.task).restarts
            # every grid point of the cell and of its baseline gets the new restarts
            more = max(cell.restarts_needed - planned, 0) / planned * len(trials)
            per_trial = _mean([seconds.get(t) for t in trials]) or result.seconds_per_trial
            cell = replace(cell, more_hours=more * per_trial / 3600)
        result.cells.append(cell)

    def propose(sets: list[str]) -> Proposal:
        return _propose(store, plan, records, seconds, sets)

    if restarts is not None:
        result.proposal = propose(_sets(plan.matrix, {None: restarts}))
    elif effect is not None:
        needs: dict[str, int] = {}
        for cell in result.cells:
            if cell.restarts_needed is not None:
                needs[cell.task] = max(needs.get(cell.task, 0), cell.restarts_needed)
        planned = {t: plan.matrix.finetune.protocol(t).restarts for t in needs}
        more = {t: n for t, n in needs.items() if n > planned[t]}
        if not more and needs:
            result.enough_now = max(needs.values())
        elif more:
            result.proposal = propose(_sets(plan.matrix, {None: max(more.values())}))
            if len(more) < len(needs) or len(set(more.values())) > 1:
                result.per_task = propose(_sets(plan.matrix, more))
    return result


def _cell_power(
    v: Variation, detail: Detail, effect: float | None, restarts: int | None
) -> CellPower:
    cell = CellPower(
        row_label=detail.row_label,
        column=detail.column,
        task=detail.task,
        test=v.test,
        examples=v.examples,
        restarts=v.restarts,
        mde=v.mde(),
        false_marks=v.false_marks() if v.unreliable() else None,
    )
    if restarts is not None:
        cell = replace(cell, mde_at=v.mde(restarts))
    if effect is not None:
        needed = power.restarts_for(v, effect)
        cell = replace(
            cell,
            power_now=v.power(effect),
            power_at=None if restarts is None else v.power(effect, restarts),
            restarts_needed=needed,
            examples_needed=None if needed is not None else power.examples_for(v, effect),
        )
    return cell


def _seconds_by_trial(records: dict[str, Record]) -> dict[str, float]:
    """Each finished fine-tuning trial's wall seconds, as its record measured them."""
    return {i: r.seconds for i, r in records.items() if r.stage == "finetune" and r.seconds}


def _mean(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.fmean(present) if present else None


def _sets(matrix: Matrix, restarts: dict[str | None, int]) -> list[str]:
    """The `--set`s giving each task in `restarts` its number (key None: every task, through
    `finetune.restarts` and each task's own task_settings.restarts that would override it)."""
    ft = matrix.finetune
    sets = []
    for task, n in restarts.items():
        if task is not None:
            sets.append(f"finetune.task_settings.{task}.restarts={n}")
            continue
        sets.append(f"finetune.restarts={n}")
        for own, settings in ft.task_settings.items():
            if settings.restarts is not None and own in ft.tasks:
                sets.append(f"finetune.task_settings.{own}.restarts={n}")
    return sets


def _propose(
    store: RunStore,
    old_plan: Plan,
    records: dict[str, Record],
    seconds: dict[str, float],
    sets: list[str],
) -> Proposal:
    """What `sets` add to this run: the run's matrix planned again with them (a trial's id does
    not depend on the number of restarts, so finished trials are kept), each new trial costing
    what the run's finished trials of its task and model took on average. (The new plan is an
    expansion of the matrix: it reads the run's inputs.)"""
    data = old_plan.matrix.model_dump(mode="json")
    finetune = data["finetune"]
    for item in sets:
        key, value = item.split("=")
        path = key.split(".")[1:]  # below "finetune"
        if path == ["restarts"]:
            finetune["restarts"] = int(value)
        else:  # task_settings.<task>.restarts
            finetune.setdefault("task_settings", {}).setdefault(path[1], {})["restarts"] = int(
                value
            )
    new_plan = build_plan(Matrix.model_validate(data), str(store.root))
    overall = statistics.fmean(seconds.values())
    by_kind: dict[tuple[str, str], list[float]] = {}
    for trial in old_plan.finetune:
        if trial.id in seconds:
            by_kind.setdefault((trial.task, trial.pretrain_id), []).append(seconds[trial.id])
    new = [t for t in new_plan.finetune if status_of(records.get(t.id)) is not Status.DONE]
    total = sum(statistics.fmean(by_kind.get((t.task, t.pretrain_id), [overall])) for t in new)
    return Proposal(sets, len(new), total / 3600)


def _plan_command(source: dict[str, Any]) -> str:
    """`bertabl plan <matrix>` with the run's own overrides, and its scale where that was not
    the file's own (a --scale)."""
    parts = ["bertabl plan", source["path"]]
    path = Path(source["path"])
    if path.is_file():
        try:
            own = tomllib.loads(path.read_text(encoding="utf-8")).get("scale", "tiny")
        except (tomllib.TOMLDecodeError, UnicodeDecodeError):
            own = source.get("scale")
        if own != source.get("scale"):
            parts.append(f"--scale {source['scale']}")
    parts += [f"--set {_quoted(o)}" for o in source.get("overrides", [])]
    return " ".join(parts)


def _quoted(override: str) -> str:
    return f"'{override}'" if any(c in override for c in " []\"'*") else override


# -- what `bertabl power` prints ------------------------------------------------------------------
def table(result: PowerPlan) -> tuple[list[str], list[list[str]]]:
    """(headers, rows): one row per compared cell, points as the report shows them."""
    d = result.effect is not None and f"{100 * result.effect:g}"
    n = result.restarts
    headers = ["Row", "Column", "Test", "Examples", "Restarts", f"MDE ({POWER:.0%})"]
    headers += [f"MDE at {n} restarts"] if n else []
    headers += [f"Power at {d}"] if d else []
    headers += [f"Power at {d}, {n} restarts"] if d and n else []
    headers += [f"Needs for {d}", "More trial-hours"] if d else []
    rows = []
    for c in result.cells:
        row = [
            c.row_label,
            c.column,
            "per example" if c.test == power.BOOTSTRAP else "over restarts",
            f"{c.examples:,}" if c.examples else "—",
            str(c.restarts),
            _points(c.mde) + ("†" if c.false_marks is not None else ""),
        ]
        row += [_points(c.mde_at)] if n else []
        row += [f"{c.power_now:.0%}"] if d else []
        row += [f"{c.power_at:.0%}"] if d and n else []
        if d:
            row += [_need(c), "—" if c.more_hours is None else f"{c.more_hours:.2f}"]
        rows.append(row)
    return headers, rows


def aligned(headers: list[str], rows: list[list[str]]) -> str:
    """The table as plain text in aligned columns (for a pipe: no styles, no wrapping)."""
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(len(headers))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in [headers, *rows]
    )


def _points(value: float | None) -> str:
    return "none" if value is None else f"{100 * value:.1f}"


def _need(cell: CellPower) -> str:
    if cell.restarts_needed is not None:
        return f"{cell.restarts_needed:,} restart" + ("s" if cell.restarts_needed > 1 else "")
    if cell.examples_needed is not None:
        return f"{cell.examples_needed:,} dev examples at {cell.restarts} restarts"
    return f"no number (≤ {MAX_RESTARTS:,} restarts, or examples)"


def notes(result: PowerPlan) -> list[str]:
    """What the table means, and the `--set` line, as lines of text."""
    lines = [
        f"{result.name} ({result.run_dir}): each cell against {result.baseline}. MDE: the "
        f"smallest true difference (points) the report's test marks at p < 0.05, the right way "
        f"round, in {POWER:.0%} of runs like this one (new dev examples and restart seeds), "
        "from this run's per-example and per-restart variation."
    ]
    flagged = [c for c in result.cells if c.false_marks is not None]
    if flagged:
        lines.append(
            "† the restarts vary beyond the per-example test's spread (p < 0.05): with no true "
            f"difference it would mark {_range([c.false_marks for c in flagged])} of such "
            "comparisons, so a difference counts as detected only where it also stands out "
            "from the restarts' spread, which more restarts narrow."
        )
    if result.not_compared:
        lines.append(f"{result.not_compared} cell(s) not compared yet (pending or failed).")
    speed = f"{result.seconds_per_trial:.1f} s a fine-tuning trial on average"
    if result.enough_now is not None:
        lines.append(
            f"This run's restarts already detect {100 * result.effect:g} points in every cell "
            f"restarts can help (the most any needs: {result.enough_now})."
        )
    for label, proposal in (("every task", result.proposal), ("per task", result.per_task)):
        if proposal is None:
            continue
        if result.restarts is not None:
            what = f"{result.restarts} restarts"
        else:
            what = f"{100 * result.effect:g} points in every cell restarts can help ({label})"
        lines.append(
            f"For {what}: {result.command} "
            + " ".join(f"--set {s}" for s in proposal.sets)
            + f"  ({proposal.new_trials:,} more fine-tuning trials, about "
            f"{proposal.hours:,.2f} trial-hours at this run's speed, {speed}; `bertabl run` "
            f"with the same --set and --run-dir {result.run_dir} trains only those)"
        )
    return lines


def _range(rates: list[float]) -> str:
    low, high = min(rates), max(rates)
    return f"{low:.0%}" if round(100 * low) == round(100 * high) else f"{low:.0%}-{high:.0%}"


__all__ = ["CellPower", "PowerPlan", "Proposal", "aligned", "notes", "power_plan", "table"]
