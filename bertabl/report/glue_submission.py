"""The GLUE server's submission files: each row's selected models' predictions on GLUE's
unlabeled test sets, one `<Task>.tsv` per task ("index<TAB>prediction"), as the server wants
them (class names for the NLI tasks, 0/1 for the binary ones, a score for STS-B).

A row's model for a task is its dev-selected grid point's restart that is best on dev; its
test-set predictions come from the test-split stage of `bertabl run` (data.glue_dir holding
GLUE's test.tsv files).
"""

from __future__ import annotations

from pathlib import Path

from bertabl.matrix.cells import cell_trials
from bertabl.matrix.plan import Plan
from bertabl.orchestrate.store import RunStore
from bertabl.report.build import predictions_of
from bertabl.selection import select_model
from bertabl.tasks import sources

# The server's file name of each task's (test split's) predictions.
SUBMISSION = {
    ("cola", "glue_test"): "CoLA",
    ("sst2", "glue_test"): "SST-2",
    ("mrpc", "glue_test"): "MRPC",
    ("stsb", "glue_test"): "STS-B",
    ("qqp", "glue_test"): "QQP",
    ("mnli", "glue_test"): "MNLI-m",
    ("mnli", "glue_test_mismatched"): "MNLI-mm",
    ("qnli", "glue_test"): "QNLI",
    ("rte", "glue_test"): "RTE",
    ("wnli", "glue_test"): "WNLI",
}


def write_glue_submission(plan: Plan, store: RunStore, out_dir: Path) -> list[Path]:
    """`out_dir/<row>/<Task>.tsv` for every row and GLUE task with test-set predictions."""
    load = predictions_of(store)
    records = store.records()
    written = []
    for row in plan.rows:
        for task in plan.matrix.finetune.tasks:
            trials = cell_trials(plan, row, task)
            if not trials or row.multitask:
                continue
            selected = select_model(trials, records, plan.matrix.metric_for(task))
            if selected.best is None:
                continue
            best = plan.trial(selected.best)
            spec = plan.matrix.spec(task)
            for split in sources.test_splits(best.config.task_data):
                name = SUBMISSION.get((task, split))
                lines = load(best.id, split) if name else None
                if lines is None:
                    continue
                ids = [r["id"] for r in sources.read_rows(spec, split, best.config.task_data)]
                path = Path(out_dir) / row.name / f"{name}.tsv"
                path.parent.mkdir(parents=True, exist_ok=True)
                body = "".join(
                    f"{ids[line['index']]}\t{_value(line['prediction'])}\n" for line in lines
                )
                path.write_text("index\tprediction\n" + body, encoding="utf-8")
                written.append(path)
    return written


def _value(prediction) -> str:
    return f"{prediction:.3f}" if isinstance(prediction, float) else str(prediction)
