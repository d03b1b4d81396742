"""`bertabl export`: a report cell's model as a `save_pretrained` folder anyone can load.

The cell's model is its dev-selected grid point's restart that is best on dev (the paper's
protocol for the models it submitted). The trial kept its final weights (finetune/kept.py);
they are written with transformers' head class, the full vocabulary (the word embeddings that
fine-tuning compacted are whole again: rows it never read keep their pre-trained values) and
the tokenizer of the pre-trained model, so `AutoModelFor...` loads it. It reads the run
directory alone (its plan, records and kept weights), not the task's data, which may be gone.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from bertabl.errors import UserError
from bertabl.matrix.cells import cell_trials
from bertabl.orchestrate.lookup import plan_of_run
from bertabl.orchestrate.store import RunStore
from bertabl.selection import select_model
from bertabl.trial.files import FINAL_WEIGHTS


def export_model(run_dir: Path, row_name: str, task: str, out_dir: Path) -> dict:
    """Write the selected model of (row, task) to `out_dir`; returns what it wrote there."""
    from transformers import AutoTokenizer

    from bertabl.finetune.epoch_loop import prepare
    from bertabl.finetune.kept import load_final
    from bertabl.orchestrate.rank import model_folder, quiet_libraries
    from bertabl.training import TrialRuntime, pick_device

    quiet_libraries()
    store = RunStore(run_dir)
    plan = plan_of_run(store)
    rows = {r.name: r for r in plan.rows}
    if row_name not in rows:
        raise UserError(f"--row {row_name}: no such row in {run_dir}; rows: {', '.join(rows)}")
    if task not in plan.matrix.finetune.tasks:
        raise UserError(
            f"--task {task}: the run does not fine-tune it; tasks: "
            f"{', '.join(plan.matrix.finetune.tasks)}"
        )
    row = rows[row_name]
    if row.multitask:
        raise UserError(f"--row {row_name}: a multi-task row's shared encoder is not exported")
    metric, records = plan.matrix.metric_for(task), store.records()
    selected = select_model(cell_trials(plan, row, task), records, metric)
    if selected.best is None:
        raise UserError(f"{row_name} / {task}: no finished trial to export; run the matrix first")
    best = plan.trial(selected.best)
    trial_dir = store.trial_dir(best.id)
    if not (trial_dir / FINAL_WEIGHTS).is_dir():
        raise UserError(
            f"{best.id} kept no final weights (a run by an older bertabl, or its folder "
            f"{trial_dir / FINAL_WEIGHTS} was removed); re-run the trial to export it"
        )
    pretrained = model_folder(best.config, store)
    runtime = TrialRuntime(pick_device(0))
    # The model alone (splits=()): the task's data may be gone by now, as it may for a report.
    data, model = prepare(best.config, pretrained, runtime, splits=())
    if not type(model).__module__.startswith("transformers."):
        raise UserError(
            f"{row_name} / {task} uses bertabl's own head ({type(model).__name__}); export writes "
            "transformers' heads (head = 'linear', BERT's pooling) only"
        )
    load_final(model, trial_dir)
    if data.spec.labels:
        model.config.id2label = dict(enumerate(data.spec.labels))
        model.config.label2id = {name: i for i, name in enumerate(data.spec.labels)}
    out_dir = Path(out_dir)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    model.save_pretrained(out_dir)
    AutoTokenizer.from_pretrained(pretrained).save_pretrained(out_dir)
    about = {
        "trial": best.id,
        "row": row_name,
        "task": task,
        "grid_point": dict(best.grid_point),
        "restart": best.restart,
        f"dev_{metric}": records[best.id].score(f"dev_{metric}"),
        "class": type(model).__name__,
        "run": str(store.root),
    }
    (out_dir / "bertabl_export.json").write_text(json.dumps(about, indent=2) + "\n")
    return about


__all__ = ["export_model"]
