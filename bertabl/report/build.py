"""From a run directory (or a matrix) to report files on disk."""

from __future__ import annotations

from pathlib import Path

from bertabl.matrix.plan import Plan
from bertabl.orchestrate.store import RunStore
from bertabl.report.render import ReportContext, render_latex, render_markdown
from bertabl.report.select import build_table

FORMATS = {"md": render_markdown, "tex": render_latex}


def write_report(plan: Plan, store: RunStore, out_dir: Path, formats: list[str]) -> list[Path]:
    """Render the run's results in each format to `out_dir/<matrix name>.<ext>`."""
    records = store.records()
    table = build_table(plan, records)
    planned = [t.id for t in [*plan.pretrain, *plan.finetune]]
    counts: dict[str, int] = {}
    for trial_id in planned:
        status = records[trial_id]["status"] if trial_id in records else "pending"
        counts[status] = counts.get(status, 0) + 1
    matrix = plan.matrix
    ctx = ReportContext(
        title=matrix.report.title or matrix.name,
        description=matrix.description,
        source=store.manifest()["source"],
        data=matrix.data.model_dump(mode="json"),
        trial_counts=counts,
        tasks=list(matrix.finetune.tasks),
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for fmt in formats:
        path = out_dir / f"{matrix.name}.{fmt}"
        path.write_text(FORMATS[fmt](table, ctx), encoding="utf-8")
        written.append(path)
    return written
