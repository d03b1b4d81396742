"""The `bertabl` command line: argument parsing and display only; the work is in plain functions."""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from bertabl import __version__
from bertabl.errors import UserError

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="Declarative BERT ablation studies: TOML matrix -> Ray Tune trials -> paper-style tables.",
)
console = Console()
errors = Console(stderr=True)

SetOption = Annotated[
    list[str] | None,
    typer.Option("--set", help="Override a matrix key: key.path=value (TOML value). Repeatable."),
]
ScaleOption = Annotated[
    str | None, typer.Option("--scale", help="Scale preset, overriding the matrix's `scale`.")
]
RunDirOption = Annotated[
    Path | None, typer.Option("--run-dir", help="Run directory [default: runs/<matrix name>].")
]


def user_errors(command):
    """Print a UserError as one line on stderr and exit 2: no traceback for fixable mistakes."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except UserError as err:
            errors.print(f"[bold red]error:[/] {err}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None

    return wrapper


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


def _load(matrix: Path, overrides: list[str] | None, scale: str | None):
    from bertabl.matrix import build_plan, load_matrix

    loaded, source = load_matrix(matrix, overrides or [], scale)
    return build_plan(loaded, source.path), source


@app.command()
@user_errors
def schema() -> None:
    """Print the JSON schema of a matrix file (every key, its type, default and meaning)."""
    from bertabl.matrix import Matrix

    print(json.dumps(Matrix.model_json_schema(), indent=2))


@app.command()
@user_errors
def tasks() -> None:
    """List the fine-tuning tasks a matrix can name."""
    from bertabl.data.tasks import TASKS

    table = Table("task", "input", "labels", "metrics", "description", box=None)
    for spec in TASKS.values():
        shape = "sentence pair" if spec.pair else "single sentence"
        table.add_row(
            spec.name, shape, str(spec.num_labels), ", ".join(spec.metrics), spec.description
        )
    console.print(table)


@app.command()
@user_errors
def plan(
    matrix: Annotated[Path, typer.Argument(help="Matrix TOML file.")],
    set_: SetOption = None,
    scale: ScaleOption = None,
) -> None:
    """Validate a matrix and show the trials it expands to and their compute, running nothing."""
    from bertabl.matrix.compute import PAPER_BASE_FLOPS

    the_plan, source = _load(matrix, set_, scale)
    m = the_plan.matrix
    console.print(
        f"[bold]{m.name}[/] ({source.path}, scale {m.scale}): {m.description}", soft_wrap=True
    )

    pt = _table("trial", "rows", "objective", "L/H/A", "steps", "params", "tokens", "FLOPs")
    for t in the_plan.pretrain:
        cfg = t.config["pretrain"]
        rows = ", ".join(r.name for r in the_plan.rows if r.pretrain_id == t.id)
        size = "{layers}/{hidden}/{heads}".format(**cfg["model"])
        pt.add_row(
            t.id,
            rows,
            cfg["objective"],
            size,
            str(cfg["steps"]),
            _si(t.parameters),
            _si(t.tokens),
            f"{t.flops:.2e}",
        )
    console.print("[bold]Stage 1: pre-training[/]", pt)

    ft = _table("trial", "depends on", "task", "batch", "lr", "epochs", "restart", "FLOPs ≤")
    for t in the_plan.finetune:
        point = dict(t.grid_point)
        ft.add_row(
            t.id,
            t.pretrain_id,
            t.task,
            str(point["batch_size"]),
            f"{point['learning_rate']:g}",
            str(point["epochs"]),
            str(t.restart),
            f"{t.flops:.2e}",
        )
    console.print("[bold]Stage 2: fine-tuning[/]", ft)

    pt_flops = sum(t.flops for t in the_plan.pretrain)
    ft_flops = sum(t.flops for t in the_plan.finetune)
    console.print(
        f"{len(the_plan.pretrain)} pre-training + {len(the_plan.finetune)} fine-tuning trials "
        f"({len(the_plan.rows)} rows x {len(m.finetune.tasks)} tasks); "
        f"estimated compute {pt_flops:.2e} + {ft_flops:.2e} = {the_plan.total_flops:.2e} FLOPs "
        f"(6 x params x tokens) = {the_plan.total_flops / PAPER_BASE_FLOPS:.2e} x the paper's "
        f"BERT-Base pre-training ({PAPER_BASE_FLOPS:.2e})",
        soft_wrap=True,
    )


@app.command()
@user_errors
def run(
    matrix: Annotated[Path, typer.Argument(help="Matrix TOML file.")],
    set_: SetOption = None,
    scale: ScaleOption = None,
    run_dir: RunDirOption = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Where to write the report [default: run dir].")
    ] = None,
    latex: Annotated[bool, typer.Option("--latex", help="Also write a LaTeX table.")] = False,
    address: Annotated[
        str | None, typer.Option("--address", help="Ray cluster to join (or RAY_ADDRESS).")
    ] = None,
) -> None:
    """Run every unfinished trial of a matrix on Ray Tune, then write its report."""
    from rich.live import Live

    from bertabl.orchestrate.progress import LiveProgress
    from bertabl.orchestrate.run import run_plan
    from bertabl.orchestrate.store import RunStore
    from bertabl.report.build import write_report

    the_plan, source = _load(matrix, set_, scale)
    store = RunStore(run_dir or Path("runs") / the_plan.matrix.name)
    console.print(
        f"[bold]{the_plan.matrix.name}[/]: {len(the_plan.pretrain)} pre-training + "
        f"{len(the_plan.finetune)} fine-tuning trials -> {store.root}"
    )
    progress = LiveProgress(the_plan, console)
    with Live(progress, console=console, refresh_per_second=4, transient=False):
        summary = run_plan(the_plan, store, source, progress, address)
    console.print()
    paths = write_report(the_plan, store, out or store.root, ["md", "tex"] if latex else ["md"])
    console.print(
        f"{len(summary.done)} ran, {len(summary.skipped)} already done, {len(summary.failed)} "
        f"failed, {len(summary.blocked)} blocked in {summary.seconds:.1f}s"
    )
    for path in paths:
        console.print(f"report: {path}")
    if summary.failed or summary.blocked:
        errors.print(
            "some trials failed or are blocked: see the report's notes and "
            f"{store.root}/trials/<id>/record.json; `bertabl run` again retries them"
        )
        raise typer.Exit(1)


@app.command()
@user_errors
def report(
    target: Annotated[Path, typer.Argument(help="Run directory, or the matrix TOML that ran.")],
    set_: SetOption = None,
    scale: ScaleOption = None,
    run_dir: RunDirOption = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Output folder [default: the run directory].")
    ] = None,
    latex: Annotated[bool, typer.Option("--latex", help="Also write a LaTeX table.")] = False,
) -> None:
    """Render a run's results as Markdown (and LaTeX) tables laid out like the paper's."""
    from rich.markdown import Markdown

    from bertabl.matrix import Matrix, build_plan
    from bertabl.orchestrate.store import RunStore
    from bertabl.report.build import write_report

    if target.is_dir():
        store = RunStore(target)
        the_plan = build_plan(Matrix.model_validate(store.manifest()["matrix"]), str(target))
    else:
        the_plan, _ = _load(target, set_, scale)
        store = RunStore(run_dir or Path("runs") / the_plan.matrix.name)
        store.manifest()  # a clear error when this matrix has not been run
    paths = write_report(the_plan, store, out or store.root, ["md", "tex"] if latex else ["md"])
    markdown = paths[0].read_text(encoding="utf-8").split("## Selected grid points")[0]
    console.print(Markdown(markdown))
    for path in paths:
        console.print(f"report: {path}")


def _table(*columns: str) -> Table:
    table = Table(box=None, header_style="bold")
    for column in columns:
        # ids must stay whole (they are what `bertabl resume`/reports refer to); text may wrap
        table.add_column(column, no_wrap=column in ("trial", "depends on"))
    return table


def _si(n: float) -> str:
    for unit, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f}{unit}"
    return str(int(n))


def main() -> None:
    """Console-script entry point."""
    sys.exit(app())
