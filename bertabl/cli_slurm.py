"""`bertabl slurm`: its options and what it prints (cli.py registers it; the work is in
bertabl/launch/slurm.py). Its own module to keep cli.py one screenful per command."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from bertabl.cli_options import RunDirOption, ScaleOption, SetOption

console = Console()


def slurm(
    matrix: Annotated[Path, typer.Argument(help="Matrix TOML file.")],
    set_: SetOption = None,
    scale: ScaleOption = None,
    run_dir: RunDirOption = None,
    nodes: Annotated[int, typer.Option("--nodes", min=1, help="Nodes (one Ray node each).")] = 1,
    cpus_per_node: Annotated[
        int | None,
        typer.Option("--cpus-per-node", min=1, help="CPUs per node [default: whole nodes]."),
    ] = None,
    gpus_per_node: Annotated[int, typer.Option("--gpus-per-node", min=0)] = 0,
    mem: Annotated[str | None, typer.Option("--mem", help="Memory per node (e.g. 64G).")] = None,
    time: Annotated[
        str, typer.Option("--time", help="Time limit: HH:MM:SS or D-HH:MM:SS.")
    ] = "24:00:00",
    stop_before: Annotated[
        int | None,
        typer.Option(
            "--stop-before",
            help="Seconds before the time limit at which bertabl stops (Slurm's --signal) "
            "[default: 5 minutes, at most a quarter of --time].",
        ),
    ] = None,
    partition: Annotated[str | None, typer.Option("--partition", "-p")] = None,
    account: Annotated[str | None, typer.Option("--account", "-A")] = None,
    qos: Annotated[str | None, typer.Option("--qos")] = None,
    requeues: Annotated[
        int,
        typer.Option(
            "--requeues",
            min=0,
            help="Requeue the job itself up to this many times when the time limit stops it.",
        ),
    ] = 0,
    job_name: Annotated[
        str | None, typer.Option("--job-name", help="[default: bertabl-<matrix name>]")
    ] = None,
    setup: Annotated[
        list[str] | None,
        typer.Option(
            "--setup",
            help="A shell line run first in the job (module load ..., source .../activate); "
            "repeatable [default: put this bertabl's Python environment first on PATH].",
        ),
    ] = None,
    sbatch_option: Annotated[
        list[str] | None,
        typer.Option("--sbatch", help="Any other sbatch option (--sbatch=--constraint=a100)."),
    ] = None,
    script: Annotated[
        Path | None,
        typer.Option(
            "--script", help="Where to write it [default: <run dir>/slurm/<name>.sbatch]."
        ),
    ] = None,
    submit: Annotated[bool, typer.Option("--submit", help="Also submit it (sbatch).")] = False,
) -> None:
    """Write a Slurm batch script that runs a matrix on a Ray cluster over its nodes
    (and with --submit, submit it).

    Submitting the same script again continues the run; near the time limit bertabl stops
    cleanly so that it can (--requeues does that by itself)."""
    from bertabl.launch import slurm as launcher
    from bertabl.matrix import build_plan, load_matrix

    loaded, source = load_matrix(matrix, set_ or [], scale.value if scale else None)
    plan = build_plan(loaded, source.path, dry_run=True)  # the data may live on the cluster only
    name = plan.matrix.name
    folder = (run_dir or Path("runs") / name).absolute()
    job = launcher.SlurmJob(
        matrix=matrix.absolute(),
        run_dir=folder,
        script=(script or folder / "slurm" / f"{name}.sbatch").absolute(),
        workdir=Path.cwd(),
        overrides=list(set_ or []),
        scale=scale.value if scale else None,
        nodes=nodes,
        cpus_per_node=cpus_per_node,
        gpus_per_node=gpus_per_node,
        mem=mem,
        time=time,
        stop_before=stop_before,
        partition=partition,
        account=account,
        qos=qos,
        requeues=requeues,
        job_name=job_name or f"bertabl-{name}",
        setup=list(setup or []),
        sbatch_options=list(sbatch_option or []),
    )
    for warning in launcher.check_job(job, plan, launcher.partition_info(partition)):
        console.print(f"[yellow]warning:[/] {warning}", soft_wrap=True, highlight=False)
    path = launcher.write_script(job)
    trials = len(plan.pretrain) + len(plan.finetune) + len(plan.tests)
    console.print(
        f"wrote {path}: {name} ({trials} trials) on {nodes} node(s), time limit {time}, "
        f"bertabl stops {job.lead} s before it -> {folder}",
        soft_wrap=True,
        highlight=False,
    )
    if submit:
        job_id = launcher.submit(path)
        log = folder / "slurm" / f"{job.job_name}-{job_id}.out"
        console.print(f"submitted job {job_id}; its log: {log}", soft_wrap=True, highlight=False)
    else:
        console.print(f"submit with: sbatch {path}", soft_wrap=True, highlight=False)
    console.print(
        f"follow it with `bertabl status {folder}`; once it ends: `bertabl report {folder}`; "
        "if the time limit stopped it, submit the same script again",
        soft_wrap=True,
        highlight=False,
    )
