"""The `bertabl` command line: argument parsing and display only; the work is in plain functions."""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from bertabl import __version__
from bertabl.cli_options import (
    AddressOption,
    EffectOption,
    Format,
    LatexOption,
    Layout,
    OutOption,
    RestartsOption,
    RunDirOption,
    Scale,
    ScaleOption,
    SetOption,
    Stage,
    StorageOption,
)
from bertabl.cli_slurm import slurm
from bertabl.cli_tables import columns_table, show, si
from bertabl.errors import UserError

app = typer.Typer(
    no_args_is_help=True,
    add_completion=True,  # --install-completion / --show-completion: bash, zsh, fish, pwsh
    pretty_exceptions_enable=False,
    # help texts say "[default: ...]": plain text, not rich markup (which would drop it)
    rich_markup_mode=None,
    help="Declarative BERT ablation studies: TOML matrix -> Ray Tune trials -> paper-style tables.",
)
console = Console()
errors = Console(stderr=True)


def command(function):
    """`function` as a bertabl command that prints a UserError as one line on stderr and exits
    2: no traceback for fixable mistakes."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except UserError as err:
            errors.print(f"[bold red]error:[/] {err}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None

    return app.command()(wrapper)


def _version(value: bool) -> None:
    if value:
        console.print(f"bertabl {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show version.")
    ] = False,
) -> None:
    """bertabl: which parts of a pre-trained Transformer matter."""


def _load(matrix: Path, overrides: list[str] | None, scale: Scale | None, dry_run=False):
    from bertabl.matrix import build_plan, load_matrix

    loaded, source = load_matrix(matrix, overrides or [], scale.value if scale else None)
    return build_plan(loaded, source.path, dry_run=dry_run), source


@command
def schema() -> None:
    """Print the JSON schema of a matrix file (every key, its type, default and meaning): the
    one editors read from a matrix's `#:schema` line (bertabl/matrix/matrix.schema.json)."""
    from bertabl.matrix.json_schema import editor_schema

    print(json.dumps(editor_schema(), indent=2))


@command
def tasks() -> None:
    """List the built-in fine-tuning tasks (a matrix adds its own in data.custom_tasks)."""
    from bertabl.tasks.catalogue import TaskCatalogue

    table = Table("task", "input", "labels", "metrics", "description", box=None)
    for spec in TaskCatalogue().values():
        shape = "sentence pair" if spec.pair else "single sentence"
        table.add_row(
            spec.name, shape, str(spec.num_labels), ", ".join(spec.metrics), spec.description
        )
    show(console, table)


@command
def plan(
    matrix: Annotated[Path, typer.Argument(help="Matrix TOML file.")],
    set_: SetOption = None,
    scale: ScaleOption = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print every resolved trial config as JSON.")
    ] = False,
    mfu: Annotated[
        float, typer.Option("--mfu", min=0.01, max=1.0, help="Model FLOPs utilisation assumed.")
    ] = 0.4,
    peak_tflops: Annotated[
        float,
        typer.Option("--peak-tflops", min=1.0, help="GPU peak assumed (H100/H200 bf16: 989)."),
    ] = 989.0,
) -> None:
    """Validate a matrix and show the trials it expands to and their compute, running nothing.

    A dry run: it also works before the data is downloaded (missing data is a warning, and the
    trials that read it have provisional ids), while `run` refuses to start without it."""
    from bertabl.matrix.compute import PAPER_BASE_FLOPS, gpu_hours
    from bertabl.matrix.summary import plan_summary

    the_plan, source = _load(matrix, set_, scale, dry_run=True)
    if as_json:
        print(json.dumps(plan_summary(the_plan, mfu, peak_tflops), indent=2))
        return
    m = the_plan.matrix
    console.print(
        f"[bold]{m.name}[/] ({source.path}, scale {m.scale}): {m.description}", soft_wrap=True
    )
    for warning in the_plan.warnings:
        console.print(f"[yellow]warning:[/] {warning}", soft_wrap=True, highlight=False)
    if the_plan.warnings:
        console.print(
            "[yellow]warning:[/] trials on missing data have provisional ids and estimated "
            "sizes; `bertabl run` needs the data",
            soft_wrap=True,
        )

    from bertabl.data.preparation_jobs import data_jobs

    jobs = data_jobs((t.id, t.config) for t in the_plan.pretrain)
    console.print(
        "[bold]Stage 0: data preparation[/] (before any trial, with every core; one token store "
        "per corpus and tokenizer, kept in the run directory's cache/ and reused)"
        + ("" if jobs else ": none, no trial pre-trains on a corpus"),
        soft_wrap=True,
    )
    for job in jobs:
        what = "train the vocabulary and tokenise" if job.vocab_size else "tokenise"
        console.print(
            f" {what} {job.corpus} with {job.tokenizer} ({len(job.trials)} pre-training trial(s))",
            soft_wrap=True,
            highlight=False,
        )

    pt = columns_table("trial", "rows", "objective", "L/H/A", "steps", "params", "tokens", "FLOPs")
    for t in the_plan.pretrain:
        cfg = t.config.pretrain
        rows = ", ".join(r.name for r in the_plan.rows if r.pretrain_id == t.id)
        size = f"{cfg.model.layers}/{cfg.model.hidden}/{cfg.model.heads}"
        cells = (str(cfg.steps), si(t.parameters), si(t.tokens), f"{t.flops:.2e}")
        pt.add_row(t.id, rows, cfg.objective, size, *cells)
    show(console, "[bold]Stage 1: pre-training[/]", pt)
    if the_plan.checkpoints:
        ck = columns_table("model", "rows", "from", "type", "params")
        for c in the_plan.checkpoints:
            rows = ", ".join(r.name for r in the_plan.rows if r.pretrain_id == c.id)
            params = si(c.parameters) if c.parameters else "?"  # a Hub model offline: unknown
            ck.add_row(c.id, rows, c.spec, c.model_type or "?", params)
        show(console, "[bold]Checkpoints[/] (fine-tuned as given, not pre-trained here)", ck)

    from bertabl.matrix.cells import trial_rows

    rows_of = trial_rows(the_plan)
    recipes = any(t.recipe for t in the_plan.finetune)
    columns = ["trial", "rows", "depends on", "task", "head", "len", "batch", "lr", "epochs"]
    ft = columns_table(*columns, "restart", "FLOPs ≤", *(["recipe"] if recipes else []))
    for t in the_plan.finetune:
        point = dict(t.grid_point)
        task = t.task
        if t.multitask:  # one trial, one encoder, a head per task
            task = "shared encoder: " + " + ".join(t.multitask.tasks)
        head, _, features = t.head
        ft.add_row(
            t.id,
            ", ".join(rows_of.get(t.id, [])),
            t.pretrain_id,
            task,
            f"{head}: {features}" if features else head,
            str(t.config.max_seq_len),
            str(point["batch_size"]),
            f"{point['learning_rate']:g}",
            str(point["epochs"]),
            str(t.restart),
            f"{t.flops:.2e}",
            *([" ".join(f"{k}={v}" for k, v in t.recipe.items())] if recipes else []),
        )
    show(console, "[bold]Stage 2: fine-tuning[/]", ft)
    for group in m.finetune.multitask:
        console.print(
            f"Multi-task group [bold]{group.name}[/]: {' + '.join(group.tasks)} fine-tuned "
            f"together (one encoder, a head per task, sampling temperature "
            f"{group.temperature:g}); each shared trial also records every task's results, "
            "which its rows' cells select on that task's own dev metric",
            soft_wrap=True,
        )

    pt_flops = sum(t.flops for t in the_plan.pretrain)
    ft_flops = sum(t.flops for t in the_plan.finetune)
    console.print(
        f"{len(the_plan.pretrain)} pre-training + {len(the_plan.finetune)} fine-tuning trials "
        f"({len(the_plan.rows)} rows x {len(m.finetune.tasks)} tasks); "
        f"estimated compute {pt_flops:.2e} + {ft_flops:.2e} = {the_plan.total_flops:.2e} FLOPs "
        f"(6 x params x tokens) = {the_plan.total_flops / PAPER_BASE_FLOPS:.2e} x the paper's "
        f"BERT-Base pre-training ({PAPER_BASE_FLOPS:.2e}); about "
        f"{gpu_hours(the_plan.total_flops, mfu, peak_tflops):,.3g} GPU-hours at {mfu:.0%} MFU of "
        f"{peak_tflops:g} TFLOPS (--mfu, --peak-tflops)",
        soft_wrap=True,
    )


@command
def run(
    matrix: Annotated[Path, typer.Argument(help="Matrix TOML file.")],
    set_: SetOption = None,
    scale: ScaleOption = None,
    run_dir: RunDirOption = None,
    out: OutOption = None,
    latex: LatexOption = False,
    address: AddressOption = None,
    storage: StorageOption = None,
    stage: Annotated[
        Stage,
        typer.Option(
            "--stage",
            help="all: both stages (a fine-tune starts once its pre-training is done); "
            "pretrain: only the pre-training trials "
            "(fine-tune later with a plain `run`).",
        ),
    ] = Stage.all,
) -> None:
    """Run every unfinished trial of a matrix on Ray Tune, then write its report.

    Finished trials are skipped; interrupted ones continue from their latest checkpoint.
    """
    from bertabl.orchestrate.plan_change import superseded
    from bertabl.orchestrate.store import RunStore

    the_plan, source = _load(matrix, set_, scale)
    store = RunStore(run_dir or Path("runs") / the_plan.matrix.name)
    replaced = superseded(store, the_plan)
    if replaced is not None:
        _note(replaced.message(store.root))
    only = {t.id for t in the_plan.pretrain} if stage is Stage.pretrain else None
    _execute(the_plan, store, source, out, latex, address, only, storage=storage)


@command
def resume(
    target: Annotated[
        str, typer.Argument(help="A run directory, or one trial id (pt-... / ft-...).")
    ],
    run_dir: RunDirOption = None,
    out: OutOption = None,
    latex: LatexOption = False,
    address: AddressOption = None,
    storage: StorageOption = None,
) -> None:
    """Resume a killed run, or one trial (and, for pre-training, the fine-tunes waiting on it)."""
    from bertabl.matrix.load import MatrixSource
    from bertabl.orchestrate.lookup import find_trial_run, plan_of_run
    from bertabl.orchestrate.plan_change import check_resumable
    from bertabl.orchestrate.store import RunStore

    if Path(target).is_dir():
        store = RunStore(target)
        the_plan = plan_of_run(store)
        only = None
    else:
        store, the_plan = find_trial_run(target, run_dir)
        only = {target} | {t.id for t in the_plan.finetune if t.pretrain_id == target}
    check_resumable(store, the_plan, only)
    source = MatrixSource(**store.manifest()["source"])
    _execute(the_plan, store, source, out, latex, address, only, storage)


@command
def status(
    target: Annotated[Path, typer.Argument(help="Run directory.")] = Path("runs"),
) -> None:
    """Show each trial of a run: state, progress, last metric, checkpoint age, attempts."""
    from bertabl.orchestrate.lookup import plan_and_notes, run_dirs, state_counts
    from bertabl.orchestrate.status import STATE_COLOURS, trial_statuses
    from bertabl.orchestrate.store import RunStore

    runs = run_dirs(target)
    if not runs:
        RunStore(target).manifest()  # the standard "not a run directory" error
    for run_dir in runs:
        store = RunStore(run_dir)
        kept = plan_and_notes(store, _note)
        statuses = trial_statuses(kept, store)
        summary = state_counts(statuses)
        running = " (running)" if store.is_locked() else ""
        console.print(f"[bold]{run_dir}[/]{running}: {summary}", soft_wrap=True)
        columns = ("trial", "stage", "what", "state", "progress", "checkpoint", "attempts")
        table = columns_table(*columns)
        for st in statuses:
            age = f"{st.checkpoint_age:.0f}s ago" if st.checkpoint_age is not None else ""
            state = f"[{STATE_COLOURS.get(st.state, 'white')}]{st.state}[/]"
            progress = st.progress + (f"  ({st.error})" if st.error else "")
            table.add_row(st.id, st.stage, st.what, state, progress, age, str(st.attempts or ""))
        show(console, table)


def _execute(the_plan, store, source, out, latex, address, only=None, storage=None) -> None:
    from rich.live import Live

    from bertabl.orchestrate.progress import LiveProgress
    from bertabl.orchestrate.run import run_plan
    from bertabl.orchestrate.tracking import tracking_lines
    from bertabl.report.build import write_report
    from bertabl.report.publish import publish_report

    count = len(only) if only is not None else len(the_plan.pretrain) + len(the_plan.finetune)
    name = the_plan.matrix.name
    console.print(f"[bold]{name}[/]: {count} trial(s) -> {store.root}", soft_wrap=True)
    for line in tracking_lines(the_plan, store.root):
        console.print(f"tracking: {line}", soft_wrap=True, highlight=False)
    progress = LiveProgress(the_plan, console)
    try:
        with Live(progress, console=console, refresh_per_second=4, transient=False):
            summary = run_plan(the_plan, store, source, progress, address, only, storage)
    finally:  # off a terminal the live table's last line has no newline: end it, error or not
        console.print()
    written = write_report(the_plan, store, out or store.root, ["md", "tex"] if latex else ["md"])
    paths = written.paths
    for line in publish_report(the_plan, store.root, written):
        console.print(f"tracking: {line}", soft_wrap=True, highlight=False)
    console.print(
        f"{len(summary.done)} ran, {len(summary.skipped)} already done, {len(summary.failed)} "
        f"failed, {len(summary.blocked)} blocked in {summary.seconds:.1f}s"
    )
    for path in paths:
        console.print(f"report: {path}", soft_wrap=True, highlight=False)
    if summary.interrupted:
        from bertabl.orchestrate.interrupt import INTERRUPTED_EXIT

        errors.print(
            f"interrupted ({summary.interrupted}): {len(summary.stopped)} trial(s) unfinished; "
            f"`bertabl resume {store.root}` continues them from their latest checkpoints",
            soft_wrap=True,
        )
        raise typer.Exit(INTERRUPTED_EXIT)
    if summary.failed or summary.blocked:
        errors.print(
            "some trials failed or are blocked: see the report's notes and "
            f"{store.root}/trials/<id>/record.json; `bertabl run` again retries them"
        )
        raise typer.Exit(1)


@command
def report(
    target: Annotated[
        Path | None,
        typer.Argument(
            help="Run directory, the matrix TOML that ran, or an earlier plan a run directory "
            "keeps (<run dir>/plans/*.json) [default: the newest run]."
        ),
    ] = None,
    set_: SetOption = None,
    scale: ScaleOption = None,
    run_dir: RunDirOption = None,
    out: OutOption = None,
    latex: LatexOption = False,
    format_: Annotated[
        list[Format] | None,
        typer.Option("--format", help="Output format. Repeatable [default: md; --latex adds tex]."),
    ] = None,
    ci: Annotated[
        bool, typer.Option("--ci", help="Add a bootstrap 95% interval over restarts to each cell.")
    ] = False,
    glue_submission: Annotated[
        bool,
        typer.Option(
            "--glue-submission",
            help="Also write the GLUE server's submission TSVs (<out>/<name>.glue/<row>/).",
        ),
    ] = False,
    layout: Annotated[
        Layout | None,
        typer.Option("--layout", help="[default: the matrix's report.layout, else inferred]"),
    ] = None,
) -> None:
    """Render a run's results as Markdown (LaTeX, CSV, JSON) tables laid out like the paper's."""
    from rich.markdown import Markdown

    from bertabl.orchestrate.lookup import newest_run, report_target
    from bertabl.report.build import write_report

    if target is None:  # the newest run under ./runs, and which others there are
        target, others = newest_run(Path("runs"))
        if others:
            names = ", ".join(str(p) for p in others)
            console.print(f"newest of {len(others) + 1} runs: {target} (others: {names})")
    the_plan, store, out = report_target(target, set_, scale and scale.value, run_dir, out, _note)
    chosen = [f.value for f in format_ or [Format.md]]
    formats = list(dict.fromkeys([*chosen, *(["tex"] if latex else [])]))
    written = write_report(
        the_plan, store, out or store.root, formats, ci=ci, layout=layout and layout.value
    )
    if "md" in formats:
        console.print(Markdown(written.summary))
    for path in written.paths:
        console.print(f"report: {path}")
    if glue_submission:
        from bertabl.report.glue_submission import write_glue_submission

        folder = (out or store.root) / f"{the_plan.matrix.name}.glue"
        files = write_glue_submission(the_plan, store, folder)
        if not files:
            raise UserError(
                "--glue-submission: no GLUE test-set predictions in this run; put GLUE's "
                "test.tsv files beside train/dev (data.glue_dir) and run the matrix again"
            )
        console.print(f"GLUE submission: {len(files)} file(s) in {folder}")


@command
def power(
    run_dir: Annotated[Path, typer.Argument(help="A finished (pilot) run directory.")],
    effect: EffectOption = None,
    restarts: RestartsOption = None,
) -> None:
    """What each comparison with the baseline row could detect (its minimum detectable effect at
    80% power), how many restarts a difference of --effect points needs, and what the new
    trials cost in trial-hours at the run's measured speed, with the `--set` line to plan them."""
    from bertabl.report.power_plan import aligned, notes, power_plan, table

    result = power_plan(run_dir, effect, restarts)
    headers, rows = table(result)
    if not console.is_terminal:  # piped: plain columns, nothing cut to a terminal's width
        print(aligned(headers, rows), *notes(result), sep="\n")
        return
    shown = columns_table(*headers)
    for row in rows:
        shown.add_row(*row)
    console.print(shown)
    for line in notes(result):
        console.print(line, soft_wrap=True, highlight=False, markup=False)


@command
def export(
    run_dir: Annotated[Path, typer.Argument(help="Run directory.")],
    out_dir: Annotated[Path, typer.Argument(help="Folder to write the model to (replaced).")],
    row: Annotated[str, typer.Option("--row", help="The report row (its name).")],
    task: Annotated[str, typer.Option("--task", help="The task.")],
) -> None:
    """Write a cell's selected fine-tuned model (its best restart on dev) as a save_pretrained
    folder with its tokenizer, loadable by transformers' AutoModelFor... classes."""
    from bertabl.orchestrate.export import export_model

    about = export_model(run_dir, row, task, out_dir)
    console.print(
        f"{about['class']} of trial {about['trial']} (restart {about['restart']}, "
        f"{', '.join(f'{k} {v:g}' for k, v in about['grid_point'].items())}) -> {out_dir}",
        soft_wrap=True,
    )


command(slurm)


def _note(text: str) -> None:
    """A note beside a command's output, on stderr (the output itself stays pipeable)."""
    errors.print(f"[yellow]note:[/] {escape(text)}", soft_wrap=True, highlight=False)


def main() -> None:
    """Console-script entry point."""
    sys.exit(app())
