"""Whole runs through the real Ray Tune stages: tiny models, synthetic data, no network."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bertabl.cli import app
from bertabl.matrix import build_plan
from bertabl.matrix.load import load_matrix
from bertabl.orchestrate.tracking import run_names
from tests.conftest import fixture_copies
from tests.orchestrate.test_tracking import scalars

pytestmark = pytest.mark.slow
runner = CliRunner()


def run_names_of(matrix: Path) -> dict[str, str]:
    return run_names(build_plan(load_matrix(matrix)[0], str(matrix)))


def _records(run_dir: Path) -> dict[str, dict]:
    paths = (run_dir / "trials").glob("*/record.json")
    return {r["id"]: r for r in (json.loads(p.read_text()) for p in paths)}


def test_run_both_stages_report_and_rerun_skips(tiny_matrix: Path, tmp_path: Path):
    run_dir = tmp_path / "run"
    tune_storage = tmp_path / "tune-storage"  # stands in for a URI such as s3://bucket/path
    args = ["run", str(tiny_matrix), "--run-dir", str(run_dir), "--latex"]
    result = runner.invoke(app, [*args, "--storage", str(tune_storage)])
    assert result.exit_code == 0, result.output
    assert (tune_storage / "trials").is_dir()  # one Tune run for both stages
    # Tune keeps only its experiment state: the records are the results, and the saved models
    # live once, in the run directory (no Tune checkpoint copies, no CSV/JSON/TensorBoard logs)
    tune_files = {p.name for p in tune_storage.rglob("*") if p.is_file()}
    assert not any(n.startswith(("events.out", "progress.", "result.")) for n in tune_files)
    assert not list(tune_storage.rglob("checkpoint_*")), tune_files

    records = _records(run_dir)
    stages = sorted(r["stage"] for r in records.values())
    assert stages == ["finetune"] * 8 + ["pretrain"] * 2
    assert all(r["status"] == "done" for r in records.values())
    for record in records.values():
        if record["stage"] == "finetune":
            assert 0.0 <= record["metrics"]["dev_accuracy"] <= 1.0
            # the fine-tune read its own pre-trained checkpoint, which exists on disk
            assert (run_dir / "trials" / record["config"]["pretrain_id"] / "model").is_dir()
        else:
            assert record["metrics"]["step"] == 10
            assert len(record["history"]) >= 1

    # [tracking] tensorboard (on by default): one TensorBoard run per trial, fed by Tune's
    # results in the driver, read back; `run` said where
    assert f"TensorBoard: {run_dir / 'tensorboard'}" in " ".join(result.output.split())
    for trial_id, name in run_names_of(tiny_matrix).items():
        curves = scalars(run_dir / "tensorboard" / name)
        history = records[trial_id]["history"]
        if records[trial_id]["stage"] == "pretrain":
            assert curves["loss"] == [(h["step"], pytest.approx(h["loss"])) for h in history]
        else:
            assert [x for x, _ in curves["dev_accuracy"]] == [h["epoch"] for h in history]

    report = (run_dir / "tiny.md").read_text()
    for label in ("MLM + NSP", "MLM only", "syn_agree (accuracy)", "syn_chain (accuracy)"):
        assert label in report
    assert "![Learning curves](tiny.curves.png)" in report
    assert (run_dir / "tiny.curves.png").read_bytes()[:4] == b"\x89PNG"
    main_table = report.split("## Cells in detail")[0]
    rows = [line for line in main_table.splitlines() if line.startswith("| MLM")]
    assert len(rows) == 2
    assert sum(line.count(" ± ") for line in rows) == 4  # 2 rows x 2 tasks, 2 restarts each
    assert "Data: synthetic" in report
    latex = (run_dir / "tiny.tex").read_text()
    assert r"\toprule" in latex and r"$\pm$" in latex and r"syn\_agree" in latex

    written = {i: r["written_at"] for i, r in records.items()}
    again = runner.invoke(app, args)
    assert again.exit_code == 0, again.output
    assert "0 ran, 10 already done" in again.output
    assert {i: r["written_at"] for i, r in _records(run_dir).items()} == written

    # the report command reads the same results from the run directory alone
    out = tmp_path / "reports"
    shown = runner.invoke(app, ["report", str(run_dir), "--out", str(out)])
    assert shown.exit_code == 0, shown.output
    assert (out / "tiny.md").read_text().split("## Provenance")[0] == report.split("## Provenance")[
        0
    ]


def test_failed_pretraining_blocks_its_finetunes_only(tiny_matrix: Path, tmp_path: Path):
    # An absurd learning rate drives the weights to inf within a step or two: the loss check
    # fails that pre-training trial (after its retry); the other variant and its fine-tunes must
    # still finish, and the failed one's fine-tunes are blocked, never run.
    text = tiny_matrix.read_text().replace(
        'pretrain = { objective = "mlm" }', 'pretrain = { objective = "mlm", learning_rate = 1e30 }'
    )
    tiny_matrix.write_text(text + "\n[resources]\nmax_failures = 1\n")
    run_dir = tmp_path / "run"
    result = runner.invoke(app, ["run", str(tiny_matrix), "--run-dir", str(run_dir)])
    assert result.exit_code == 1, result.output

    records = _records(run_dir)
    failed = [r for r in records.values() if r["status"] == "failed"]
    assert len(failed) == 1 and failed[0]["stage"] == "pretrain"
    assert "loss became" in failed[0]["error"]
    assert failed[0]["timings"]["attempt"] == 2  # tried, then retried once (max_failures = 1)
    blocked = [r for r in records.values() if r["status"] == "blocked"]
    assert len(blocked) == 4
    assert all(r["config"]["pretrain_id"] == failed[0]["id"] for r in blocked)
    assert all(failed[0]["id"] in r["error"] for r in blocked)
    done = [r for r in records.values() if r["status"] == "done"]
    assert len(done) == 5  # the healthy pre-training + its 4 fine-tunes

    report = (run_dir / "tiny.md").read_text()
    assert "blocked: its pre-training did not finish" in report
    # one numbered note per reason: both blocked cells point at the same footnote
    assert "| MLM only | —<sup>1</sup> | —<sup>1</sup> |" in report
    assert "<sup>1</sup> blocked: its pre-training did not finish" in report


def test_status_and_resume_of_one_trial(tiny_matrix: Path, tmp_path: Path):
    run_dir = tmp_path / "run"
    assert runner.invoke(app, ["run", str(tiny_matrix), "--run-dir", str(run_dir)]).exit_code == 0
    shown = runner.invoke(app, ["status", str(run_dir)])
    assert shown.exit_code == 0, shown.output
    assert "10 done" in shown.output

    # Forget one fine-tuning result: status says pending, and resuming that id runs it alone.
    records = _records(run_dir)
    ft_id = sorted(i for i, r in records.items() if r["stage"] == "finetune")[0]
    before = records[ft_id]["metrics"]
    (run_dir / "trials" / ft_id / "record.json").unlink()
    (run_dir / "trials" / ft_id / "progress.json").unlink()
    assert "1 pending" in runner.invoke(app, ["status", str(run_dir)]).output

    resumed = runner.invoke(app, ["resume", ft_id, "--run-dir", str(run_dir)])
    assert resumed.exit_code == 0, resumed.output
    assert "1 ran, 0 already done" in resumed.output
    assert _records(run_dir)[ft_id]["metrics"] == before  # same seed, same result


def test_real_data_task_families(shared_data: Path, tmp_path: Path):
    """Every task family through Ray: GLUE single (SST-2), pair (MRPC), regression (STS-B), NER
    fine-tuned and feature-based (CoNLL), span QA (SQuAD), multiple choice (SWAG)."""
    # SQuAD v1.1 train is not available offline: a stand-in in the official format, made of two
    # articles of the real dev file (one for train, one for dev).
    squad_dir = tmp_path / "squad"
    squad_dir.mkdir()
    articles = json.loads((shared_data / "squad" / "dev-v1.1.json").read_text())["data"]
    for name, article in (("train-v1.1.json", articles[0]), ("dev-v1.1.json", articles[1])):
        (squad_dir / name).write_text(json.dumps({"version": "1.1", "data": [article]}))
    # SWAG is not here either: the hand-written fixture in its original CSV layout, as both splits.
    swag_dir = fixture_copies(tmp_path / "swag", "swag/val.csv", ("train.csv", "val.csv"))
    matrix = tmp_path / "real.toml"
    matrix.write_text(f"""
name = "real"
[data]
corpus = "{shared_data}/corpus/gutenberg"
corpus_format = "paragraphs"
tokenizer = "{shared_data}/vocab/bert-base-uncased-vocab.txt"
glue_dir = "{shared_data}/glue"
conll_dir = "{shared_data}/conll2003"
squad_dir = "{squad_dir}"
swag_dir = "{swag_dir}"
[data.tasks.squad_v1]
max_train_examples = 48
max_dev_examples = 24
[data.tasks.conll2003]
max_train_examples = 64
max_dev_examples = 32
[data.tasks.conll2003_features]
max_train_examples = 64
max_dev_examples = 32
[data.tasks.sst2]
max_train_examples = 64
max_dev_examples = 32
[data.tasks.mrpc]
max_train_examples = 64
max_dev_examples = 32
[data.tasks.stsb]
max_train_examples = 64
max_dev_examples = 32
[pretrain]
steps = 5
batch_size = 8
max_seq_len = 32
[pretrain.model]
layers = 4  # the feature-based task reads the last four layers
hidden = 32
heads = 2
max_position = 64
[finetune]
tasks = ["sst2", "mrpc", "stsb", "conll2003", "conll2003_features", "squad_v1", "swag"]
restarts = 1
max_seq_len = 32
[finetune.grid]
batch_size = [16]
learning_rate = [1e-3]
epochs = [1]
""")
    run_dir = tmp_path / "run"
    result = runner.invoke(app, ["run", str(matrix), "--run-dir", str(run_dir)])
    assert result.exit_code == 0, result.output
    records = _records(run_dir)
    assert sorted(r["status"] for r in records.values()) == ["done"] * 8
    by_task = {r["config"]["task"]: r["metrics"] for r in records.values() if "task" in r["config"]}
    assert set(by_task["sst2"]) >= {"dev_accuracy"}
    assert set(by_task["mrpc"]) >= {"dev_f1", "dev_accuracy"}
    assert set(by_task["stsb"]) >= {"dev_spearman", "dev_pearson"}
    assert -1 <= by_task["stsb"]["dev_pearson"] <= 1
    assert set(by_task["conll2003"]) >= {"dev_f1", "dev_precision", "dev_recall"}
    assert 0 <= by_task["conll2003"]["dev_f1"] <= 1
    assert 0 <= by_task["conll2003_features"]["dev_f1"] <= 1
    assert 0 <= by_task["squad_v1"]["dev_exact_match"] <= by_task["squad_v1"]["dev_f1"] <= 1
    assert 0 <= by_task["swag"]["dev_accuracy"] <= 1
    report = (run_dir / "real.md").read_text()
    assert "sst2 (accuracy)" in report and "mrpc (f1)" in report and "stsb (spearman)" in report
    assert "Data: synthetic" not in report
    assert "sst2: real data" in report and "64 train examples (seeded subset)" in report
    assert "Pre-training: corpus" in report and "paragraphs format" in report


def test_a_released_checkpoint_row_beside_a_row_pretrained_here(shared_data: Path, tmp_path):
    """One row pre-trained in the run, one fine-tuning a model folder (save_pretrained, with its
    tokenizer) that no trial pre-trains, on an SST-2 slice, side by side in one report."""
    import torch
    from transformers import BertConfig, BertForPreTraining, BertTokenizerFast

    released = tmp_path / "released"
    vocab = shared_data / "vocab" / "bert-base-uncased-vocab.txt"
    tokenizer = BertTokenizerFast(vocab_file=str(vocab), do_lower_case=True)
    torch.manual_seed(1)
    config = BertConfig(
        vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=64,
    )  # fmt: skip
    BertForPreTraining(config).save_pretrained(released)
    tokenizer.save_pretrained(released)
    matrix = tmp_path / "rows.toml"
    matrix.write_text(f"""
name = "rows"
[data]
corpus = "{shared_data}/corpus/gutenberg"
corpus_format = "paragraphs"
tokenizer = "{vocab}"
glue_dir = "{shared_data}/glue"
[data.tasks.sst2]
max_train_examples = 64
max_dev_examples = 32
[pretrain]
steps = 3
batch_size = 8
max_seq_len = 32
[pretrain.model]
layers = 1
hidden = 32
heads = 2
max_position = 64
[[pretrain.variants]]
name = "here"
label = "Pre-trained here"
[[pretrain.variants]]
name = "released"
label = "Released checkpoint"
from = "{released}"
[finetune]
tasks = ["sst2"]
restarts = 1
max_seq_len = 32
[finetune.grid]
batch_size = [16]
learning_rate = [1e-3]
epochs = [1]
""")
    plan = runner.invoke(app, ["plan", str(matrix)])
    assert plan.exit_code == 0, plan.output
    assert "Checkpoints" in plan.output and "ck-" in plan.output
    run_dir = tmp_path / "run"
    result = runner.invoke(app, ["run", str(matrix), "--run-dir", str(run_dir)])
    assert result.exit_code == 0, result.output
    records = _records(run_dir)
    assert sorted(r["stage"] for r in records.values()) == ["finetune", "finetune", "pretrain"]
    from_folder = [r for r in records.values() if r["config"].get("checkpoint")]
    assert len(from_folder) == 1 and from_folder[0]["status"] == "done"
    assert from_folder[0]["config"]["checkpoint"]["location"] == str(released)
    report = (run_dir / "rows.md").read_text()
    for label in ("Pre-trained here", "Released checkpoint"):
        line = next(line for line in report.splitlines() if line.startswith(f"| {label} |"))
        assert "—" not in line  # a score in each row's cell
