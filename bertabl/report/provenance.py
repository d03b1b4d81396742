"""Where a report's numbers came from: matrix, data, trials, compute, versions, git commit.

Collected once (build.py) into a ReportContext; renderers only format it, so tests can pin the
parts that change between machines (versions, commit).
"""

from __future__ import annotations

import os
import platform
import subprocess
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from bertabl.matrix.plan import Plan
from bertabl.orchestrate.record import Record, Status, status_of
from bertabl.tasks import evaluate_metric
from bertabl.tasks.sources import FOLDER_KEY
from bertabl.tasks.spec import TaskSpec

PACKAGES = ("torch", "transformers", "datasets", "ray", "numpy")


@dataclass
class PretrainCompute:
    id: str
    rows: list[str]
    status: Status
    hours: float
    tokens: int
    flops: float


@dataclass
class ReportContext:
    """What the footer says about where the numbers came from."""

    source: dict[str, Any]  # MatrixSource: path, sha256, scale, overrides
    data_lines: list[str]  # where the corpus and each task's data came from
    trial_counts: dict[Status, int]  # by status, over the whole run (pending: no record)
    versions: dict[str, str]
    git_commit: str | None
    pretrain: list[PretrainCompute] = field(default_factory=list)
    finetune_hours: float = 0.0
    finetune_tokens: int = 0
    finetune_flops: float = 0.0
    machines: dict[str, int] = field(default_factory=dict)  # machine -> trials that ran on it


def collect_context(
    plan: Plan,
    records: dict[str, Record],
    source: dict[str, Any],
    versions: dict[str, str] | None = None,
    git_commit: str | None = "auto",
) -> ReportContext:
    """The run's provenance; `versions`/`git_commit` default to this machine's."""
    counts: dict[Status, int] = {}
    for trial in [*plan.pretrain, *plan.finetune]:
        status = status_of(records.get(trial.id))
        counts[status] = counts.get(status, 0) + 1
    pretrain = [
        PretrainCompute(
            id=t.id,
            rows=[r.name for r in plan.rows if r.pretrain_id == t.id],
            status=status_of(records.get(t.id)),
            hours=_seconds(records.get(t.id)) / 3600,
            tokens=t.tokens,
            flops=t.flops,
        )
        for t in plan.pretrain
    ]
    return ReportContext(
        source=source,
        data_lines=data_lines(
            plan.matrix.data.model_dump(mode="json"),
            [plan.matrix.spec(t) for t in plan.matrix.finetune.tasks],
            reads_corpus=any(t.objective.reads_corpus for t in plan.pretrain),
        ),
        trial_counts=dict(sorted(counts.items())),
        versions=package_versions() if versions is None else versions,
        git_commit=git_head() if git_commit == "auto" else git_commit,
        pretrain=pretrain,
        finetune_hours=sum(_seconds(records.get(t.id)) for t in plan.finetune) / 3600,
        finetune_tokens=sum(t.tokens for t in plan.finetune),
        finetune_flops=sum(t.flops for t in plan.finetune),
        machines=machines_of(records),
    )


def machines_of(records: dict[str, Record]) -> dict[str, int]:
    """How many finished trials ran on each machine (a trial on several counts for each).

    Records written before bertabl recorded the machine have none: they count for nothing."""
    counts: dict[str, int] = {}
    for record in records.values():
        if not record.done:
            continue
        for machine in sorted({w.machine for w in record.workers if w.machine is not None}):
            counts[machine] = counts.get(machine, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def _seconds(record: Record | None) -> float:
    return record.seconds if record is not None else 0.0


def package_versions() -> dict[str, str]:
    from bertabl import __version__

    versions = {"bertabl": __version__, "python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


# Set by the Docker image (its GIT_COMMIT build arg): an installed copy has no .git to ask.
GIT_COMMIT_ENV = "BERTABL_GIT_COMMIT"


def git_head(root: Path | None = None) -> str | None:
    """The commit of the bertabl checkout this code runs from, or None; '-dirty' when the
    package's own files differ from it (the code that computed the numbers: not reports/, which
    regenerating a report always changes). Not a checkout (an installed package, the Docker
    image): the commit BERTABL_GIT_COMMIT names, if any."""
    root = root or Path(__file__).resolve().parents[2]
    if not (root / ".git").exists():
        return os.environ.get(GIT_COMMIT_ENV, "").strip() or None
    try:
        head = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--", "bertabl"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("-dirty" if dirty else "")


def data_lines(data: dict[str, Any], tasks: list[TaskSpec], reads_corpus: bool = True) -> list[str]:
    """Where the pre-training corpus and each task's examples came from (real or synthetic);
    `reads_corpus` False: no trial of the run pre-trained on one (checkpoint rows, untrained
    controls), whatever the data section's default corpus says."""
    corpus = data.get("corpus")
    syn = data.get("synthetic", {})
    lines = []
    if not reads_corpus:
        lines.append(
            "Pre-training: none in this run (its rows fine-tune checkpoints named by `from`, "
            "or untrained models)"
        )
    elif corpus == "synthetic":
        lines.append(
            f"Pre-training: **synthetic** corpus (seed {syn.get('seed')}, {syn.get('documents')} "
            f"documents x {syn.get('sentences_per_document')} sentences), synthetic vocabulary"
        )
    else:
        vocabulary = (
            "a WordPiece vocabulary trained on it (pretrain.vocab_size)"
            if data.get("tokenizer") == "train"
            else f"vocabulary `{data.get('tokenizer')}`"
        )
        entries = data.get("corpora") or [data]  # several corpora, concatenated, or one
        corpora = " + ".join(
            f"`{c.get('corpus')}` ("
            + (
                "Hub dataset"
                if str(c.get("corpus")).startswith("hub:")
                else f"{c.get('corpus_format', 'bert')} format"
            )
            + ")"
            for c in entries
        )
        noun = "corpora" if len(entries) > 1 else "corpus"
        lines.append(f"Pre-training: {noun} {corpora}, {vocabulary}")
    for spec in tasks:
        task = spec.name
        if spec.synthetic:
            lines.append(
                f"{task}: **synthetic** (seed {syn.get('seed')}, {syn.get('train_examples')} "
                f"train / {syn.get('dev_examples')} dev)"
            )
            continue
        settings = data.get("tasks", {}).get(task, {})
        custom = data.get("custom_tasks", {}).get(task)
        default_dir = FOLDER_KEY.get(spec.source, "glue_dir")
        if custom is not None:  # defined in the matrix: its own files or a Hub dataset
            where = (
                f"Hub `{custom['hub_dataset']}` ({custom['train']} / {custom['dev']})"
                if custom["format"] == "hub"
                else f"`{custom['train']}` / `{custom['dev']}` ({custom['format']})"
            )
            where += evaluate_provenance(custom.get("metrics", []))
        elif settings.get("source") == "hub":
            where = f"Hub `{settings.get('hub_dataset', 'nyu-mll/glue')}`"
        else:
            where = f"`{settings.get('path') or data.get(default_dir)}`"
        sizes = [
            f"{settings[k]} {label} examples (seeded subset)"
            for k, label in (("max_train_examples", "train"), ("max_dev_examples", "dev"))
            if settings.get(k)
        ]
        lines.append(f"{task}: real data, {where}" + (f"; {', '.join(sizes)}" if sizes else ""))
    return lines


def provenance_lines(ctx: ReportContext) -> list[str]:
    """The footer as Markdown list items (renderers convert the inline markup)."""
    src = ctx.source
    overrides = ", ".join(f"`--set {o}`" for o in src.get("overrides", [])) or "none"
    counts = ", ".join(f"{n} {status}" for status, n in ctx.trial_counts.items())
    versions = ", ".join(f"{k} {v}" for k, v in ctx.versions.items())
    return [
        f"Matrix: `{src['path']}` (sha256 `{src['sha256'][:12]}`), scale `{src['scale']}`, "
        f"overrides: {overrides}",
        *ctx.data_lines,
        f"Trials: {counts}",
        f"Compute: pre-training {sum(p.hours for p in ctx.pretrain):.3f} trial-hours, "
        f"{sum(p.tokens for p in ctx.pretrain):,} tokens; fine-tuning {ctx.finetune_hours:.3f} "
        f"trial-hours, {ctx.finetune_tokens:,} tokens at most (planned; every example padded), "
        f"{sum(p.flops for p in ctx.pretrain) + ctx.finetune_flops:.3g} FLOPs in all "
        "(6 x parameters x tokens estimate)",
        *(
            ["Machines: " + "; ".join(f"{m} ({n} trials)" for m, n in ctx.machines.items())]
            if ctx.machines
            else []
        ),
        f"Versions: {versions}",
        f"Git commit: `{ctx.git_commit}`" if ctx.git_commit else "Git commit: not a git checkout",
    ]


def evaluate_provenance(metrics: list[str]) -> str:
    """`; metrics via evaluate 0.4.6: ...` for a custom task's `evaluate:` metrics: each local
    module's path and SHA-256 (what trial ids hold), each Hub metric's name; '' when none."""
    entries = [m for m in metrics if evaluate_metric.is_evaluate(m)]
    if not entries:
        return ""
    identity, _ = evaluate_metric.identity_and_location(entries)
    parts = []
    for entry in entries:
        key, source = evaluate_metric.metric_key(entry), entry[len(evaluate_metric.PREFIX) :]
        known = identity[key]
        parts.append(
            f"`{key}` (Hub metric `{source}`)"
            if "hub" in known
            else f"`{key}` (`{source}`, sha256 `{known['sha256']}`)"
        )
    try:
        version = metadata.version("evaluate")
    except metadata.PackageNotFoundError:
        version = "not installed"
    return f"; metrics via `evaluate` {version}: {', '.join(parts)}"
