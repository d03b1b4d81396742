"""A run directory stands alone: it keeps the plan it ran, so status, report and export of a
finished run read nothing else (copied elsewhere, its data deleted: the same output), and a
changed input is named by `report` and by the `run` that replaces the plan, whose earlier plan
stays reportable. The unit tests here run no trial; the two end-to-end ones share one Ray run.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bertabl.cli import app
from bertabl.data import synthetic
from bertabl.errors import UserError
from bertabl.matrix import build_plan, load_matrix
from bertabl.orchestrate.plan_change import (
    check_resumable,
    keep_plan,
    plan_notes,
    superseded,
)
from bertabl.orchestrate.store import RunStore

runner = CliRunner()
ADDED = b"\nthe red cat sees the dog\t1"  # one more SST-2 training example

MATRIX = """
name = "alone"
[data]
corpus = "{data}/corpus.txt"
tokenizer = "{data}/vocab.txt"
glue_dir = "{data}/glue"
[pretrain]
steps = 4
batch_size = 8
max_seq_len = 32
learning_rate = 1e-3
[pretrain.model]
layers = 1
hidden = 32
heads = 2
max_position = 64
[finetune]
tasks = ["sst2"]
restarts = 2
max_seq_len = 32
[finetune.grid]
batch_size = [16]
learning_rate = [1e-3, 3e-3]
epochs = [1]
[tracking]
tensorboard = false
"""


@dataclass
class Made:
    matrix: Path
    data: Path
    run_dir: Path

    @property
    def train_tsv(self) -> Path:
        return self.data / "glue" / "SST-2" / "train.tsv"


def _make(root: Path) -> Made:
    """Input files of every kind a trial id hashes: a corpus, a vocabulary, a task's splits
    (synthetic sentences, written out as files), and the matrix that names them."""
    data = root / "data"
    (data / "glue" / "SST-2").mkdir(parents=True)
    (data / "vocab.txt").write_text("\n".join(synthetic.lexicon().vocab()) + "\n")
    documents = synthetic.generate_corpus(0, 30, 6)
    (data / "corpus.txt").write_text("\n\n".join("\n".join(doc) for doc in documents) + "\n")
    for split, seed, n in (("train", 1, 48), ("dev", 2, 24)):
        examples = synthetic.generate_agree(seed, n)
        lines = [f"{t}\t{y}" for t, y in zip(examples["text_a"], examples["label"], strict=True)]
        text = "sentence\tlabel\n" + "\n".join(lines)
        (data / "glue" / "SST-2" / f"{split}.tsv").write_text(text)
    matrix = root / "alone.toml"
    matrix.write_text(MATRIX.format(data=data))
    return Made(matrix, data, root / "runs" / "alone")


def _plan(made: Made):
    matrix, source = load_matrix(made.matrix)
    return build_plan(matrix, source.path), source


def _finish(made: Made, plan, source) -> RunStore:
    """The run directory `bertabl run` leaves, every trial done (records written by hand)."""
    store = RunStore(made.run_dir)
    store.write_manifest(plan.matrix.model_dump(mode="json"), source.to_dict())
    keep_plan(store, plan)
    for trial in [*plan.pretrain, *plan.finetune]:
        metrics = {"dev_accuracy": 0.5 + 0.1 * getattr(trial, "restart", 0)}
        store.write_record(trial.id, trial.config.model_dump(mode="json"), "done", metrics=metrics)
    return store


# -- without trials ------------------------------------------------------------------------------
def test_the_kept_plan_is_read_back_without_its_inputs(tmp_path: Path):
    made = _make(tmp_path)
    plan, source = _plan(made)
    assert {Path(f.path).name for f in plan.inputs} == {
        "corpus.txt", "vocab.txt", "train.tsv", "dev.tsv"
    }  # fmt: skip
    store = _finish(made, plan, source)
    shutil.rmtree(made.data)
    kept = store.plan()
    assert [t.id for t in kept.finetune] == [t.id for t in plan.finetune]
    assert kept.rows == plan.rows and kept.cells == plan.cells and kept.inputs == plan.inputs
    assert plan_notes(store, kept) == []  # inputs that are gone are not "changed"
    check_resumable(store, kept, None)  # every trial done: nothing would read them


def test_a_changed_input_is_named_and_the_replaced_plan_kept(tmp_path: Path):
    made = _make(tmp_path)
    plan, source = _plan(made)
    store = _finish(made, plan, source)
    size = made.train_tsv.stat().st_size
    with made.train_tsv.open("ab") as handle:
        handle.write(ADDED)
    [note] = plan_notes(store, store.plan())  # cheap: size and mtime, nothing hashed
    assert f"inputs changed since {store.root} ran" in note and str(made.train_tsv) in note
    store.write_record(plan.finetune[0].id, {"stage": "finetune"}, "failed")  # to run again
    with pytest.raises(UserError, match=r"changed: .*train\.tsv\); resuming would train"):
        check_resumable(store, store.plan(), None)

    new, _ = _plan(made)
    assert [t.id for t in new.pretrain] == [t.id for t in plan.pretrain]  # the corpus is the same
    assert not {t.id for t in new.finetune} & {t.id for t in plan.finetune}  # sst2's data is not
    replaced = superseded(store, new)
    grown = size + len(ADDED)
    assert replaced.changed_inputs == [f"{made.train_tsv} ({size:,} -> {grown:,} bytes)"]
    assert replaced.finished == len(plan.finetune) - 1  # one was made failed above
    message = replaced.message(store.root)
    assert message == (
        f"inputs changed since {store.root} last ran: {made.train_tsv} ({size:,} -> {grown:,} "
        "bytes). The trials that read them are new trials, with new ids; the earlier plan's 3 "
        "finished trial(s) that are not in the new one keep their results: `bertabl report "
        f"{replaced.kept_as}` reports them"
    )
    assert keep_plan(store, new) == replaced.kept_as
    assert [t.id for t in store.plan().finetune] == [t.id for t in new.finetune]
    from bertabl.matrix.stored_plan import read_plan

    assert [t.id for t in read_plan(replaced.kept_as).finetune] == [t.id for t in plan.finetune]
    assert superseded(store, new) is None  # the same plan again replaces nothing


def test_a_run_directory_without_a_kept_plan_is_expanded_again_with_a_note(tmp_path: Path):
    made = _make(tmp_path)
    plan, source = _plan(made)
    store = _finish(made, plan, source)
    store.plan_file.unlink()  # as an earlier bertabl left it
    from bertabl.orchestrate.lookup import plan_of_run

    again = plan_of_run(store)
    assert [t.id for t in again.finetune] == [t.id for t in plan.finetune]
    [note] = plan_notes(store, again)
    assert "keeps no plan.json" in note and "the next `bertabl run` keeps it" in note


# -- through Ray ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Made:
    """One real run of the matrix: 1 pre-training and 4 fine-tuning trials."""
    made = _make(tmp_path_factory.mktemp("finished"))
    result = runner.invoke(app, ["run", str(made.matrix), "--run-dir", str(made.run_dir)])
    assert result.exit_code == 0, result.output
    return made


def _outputs(run_dir: Path, out: Path) -> dict[str, bytes]:
    """What a person reads of a run: `status`, the report in every format, an exported model
    (its files; what it says of the run's location left out)."""
    status = runner.invoke(app, ["status", str(run_dir)])
    assert status.exit_code == 0, status.output
    formats = [a for f in ("md", "tex", "csv", "json") for a in ("--format", f)]
    report = runner.invoke(app, ["report", str(run_dir), "--out", str(out / "report"), *formats])
    assert report.exit_code == 0, report.output
    model = out / "model"
    exported = runner.invoke(
        app, ["export", str(run_dir), str(model), "--row", "base", "--task", "sst2"]
    )
    assert exported.exit_code == 0, exported.output
    about = json.loads((model / "bertabl_export.json").read_text())
    assert about.pop("run") == str(run_dir)
    (model / "bertabl_export.json").write_text(json.dumps(about))
    files = {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    return files | {"status": status.output.replace(str(run_dir), "RUN").encode()}


@pytest.mark.slow
def test_a_finished_run_copied_elsewhere_without_its_inputs_reports_the_same(
    finished: Made, tmp_path: Path
):
    before = _outputs(finished.run_dir, tmp_path / "before")
    assert {"report/alone.md", "report/alone.tex", "report/alone.csv", "report/alone.json",
            "report/alone.trials.csv", "report/alone.curves.png", "model/model.safetensors",
            "model/config.json", "model/tokenizer.json"} <= set(before)  # fmt: skip
    assert b"5 done" in before["status"]
    laptop = tmp_path / "laptop" / "alone"
    shutil.copytree(finished.run_dir, laptop)
    moved = finished.data.with_name("data-elsewhere")
    finished.data.rename(moved)  # the scratch disk was wiped
    try:
        assert before == _outputs(laptop, tmp_path / "after")
    finally:
        moved.rename(finished.data)


@pytest.mark.slow
def test_a_changed_input_is_named_by_report_and_run_and_the_old_results_stay(
    finished: Made, tmp_path: Path
):
    run_dir = tmp_path / "alone"
    shutil.copytree(finished.run_dir, run_dir)
    report = runner.invoke(app, ["report", str(run_dir), "--out", str(tmp_path / "a")])
    assert report.exit_code == 0 and "note:" not in report.output
    original, stat = finished.train_tsv.read_bytes(), finished.train_tsv.stat()
    try:
        finished.train_tsv.write_bytes(original + ADDED)
        report = runner.invoke(app, ["report", str(run_dir), "--out", str(tmp_path / "b")])
        assert report.exit_code == 0, report.output
        said = " ".join(report.output.split())
        assert f"note: inputs changed since {run_dir} ran" in said
        assert str(finished.train_tsv) in said and "pending" not in said
        shown = (tmp_path / "a" / "alone.md").read_bytes()
        assert (tmp_path / "b" / "alone.md").read_bytes() == shown

        # `run` names the change and what happens; --stage pretrain: nothing to train here
        rerun = ["run", str(finished.matrix), "--run-dir", str(run_dir), "--stage", "pretrain"]
        result = runner.invoke(app, rerun)
        assert result.exit_code == 0, result.output
        said = " ".join(result.output.split())
        size = len(original)
        [kept] = (run_dir / "plans").glob("*.json")
        assert (
            f"note: inputs changed since {run_dir} last ran: {finished.train_tsv} "
            f"({size:,} -> {size + len(ADDED):,} bytes). The trials that read them are new "
            "trials, with new ids; the earlier plan's 4 finished trial(s) that are not in the "
            f"new one keep their results: `bertabl report {kept}` reports them"
        ) in said
        status = runner.invoke(app, ["status", str(run_dir)]).output
        assert "1 done, 4 pending" in status  # the new fine-tunes: never run on this data
        old = runner.invoke(app, ["report", str(kept)])
        assert old.exit_code == 0, old.output
        assert (kept.with_suffix("") / "alone.md").read_bytes() == shown
    finally:  # as the module's run read it
        finished.train_tsv.write_bytes(original)
        os.utime(finished.train_tsv, ns=(stat.st_atime_ns, stat.st_mtime_ns))
