"""The command line as a user meets it: real subprocesses (in-process through Typer's CliRunner
where a stand-in replaces minutes of work), exit codes, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO


def bertabl(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "bertabl", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


def assert_user_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert result.stderr.startswith("error: ")
    for fragment in fragments:
        assert fragment in result.stderr


def test_plan_shows_trials_and_compute():
    result = bertabl("plan", "matrices/demo.toml")
    assert result.returncode == 0, result.stderr
    assert "3 pre-training + 30 fine-tuning trials" in result.stdout
    assert "x the paper's" in result.stdout  # fraction of BERT-Base pre-training compute
    assert "pt-" in result.stdout and "ft-" in result.stdout


def test_bad_matrix_is_one_clear_line(tmp_path: Path):
    bad = tmp_path / "bad.toml"
    bad.write_text((REPO / "matrices/demo.toml").read_text().replace("heads = 2", "heads = 3"))
    assert_user_error(bertabl("plan", str(bad)), "bad.toml", "pretrain.model", "must divide")


def test_bad_override_names_the_key():
    result = bertabl("plan", "matrices/demo.toml", "--set", "finetune.grid.epochs=[2, 0]")
    assert_user_error(result, "finetune.grid.epochs[1]", "greater than or equal to 1")


def test_missing_matrix_file_suggests_a_near_name():
    result = bertabl("plan", "matrices/dmeo.toml")
    assert_user_error(result, "matrix file not found", "matrices/demo.toml")


def test_report_of_a_directory_that_never_ran(tmp_path: Path):
    assert_user_error(bertabl("report", str(tmp_path)), "not a bertabl run directory")


def test_schema_is_json_with_every_section():
    result = bertabl("schema")
    assert result.returncode == 0
    schema = json.loads(result.stdout)
    assert {"data", "pretrain", "finetune", "resources", "report"} <= set(schema["properties"])


def test_tasks_lists_the_synthetic_suite():
    result = bertabl("tasks")
    assert result.returncode == 0
    assert "syn_agree" in result.stdout and "syn_chain" in result.stdout


@pytest.mark.slow
def test_gpu_asked_but_absent_fails_before_any_trial(tmp_path: Path):
    run_dir = tmp_path / "run"
    result = bertabl(
        "run",
        "matrices/demo.toml",
        "--run-dir",
        str(run_dir),
        "--set",
        "resources.gpus_per_trial=1",
    )
    assert_user_error(result, "resources.gpus_per_trial = 1", "no GPU")
    assert not (run_dir / "trials").exists()  # nothing ran, nothing written
    assert not (run_dir / "cache").exists()  # and no corpus was tokenised first
    assert "data:" not in result.stdout and "prepared" not in result.stdout


def test_an_error_during_a_run_is_on_its_own_line(tmp_path: Path, monkeypatch):
    """Off a terminal (CI logs, `2>&1 | tee`) the live stage table's last line has no newline
    of its own: an error must not be glued to its last cell (`... 0error: ...`)."""
    from typer.testing import CliRunner

    from bertabl.cli import app
    from bertabl.errors import UserError
    from bertabl.orchestrate import run

    def refused(*args, **kwargs):
        raise UserError("resources.gpus_per_trial = 1 but the Ray cluster has no GPU")

    monkeypatch.setattr(run, "run_plan", refused)
    result = CliRunner().invoke(app, ["run", "matrices/demo.toml", "--run-dir", str(tmp_path)])
    assert result.exit_code == 2
    lines = result.output.splitlines()  # stdout and stderr as a terminal or a log shows them
    assert lines[-1] == "error: resources.gpus_per_trial = 1 but the Ray cluster has no GPU"
    assert lines[-2].split() == ["finetune", "30", "0", "30", "0", "0", "0", "0"]  # the table


def test_plan_json_has_every_resolved_trial_and_the_papers_squad_protocol():
    result = bertabl("plan", "matrices/table5.toml", "--json")
    assert result.returncode == 0, result.stderr
    plan = json.loads(result.stdout)
    squad = [t for t in plan["finetune"] if t["task"] == "squad_v1"]
    assert squad and {
        (t["config"]["max_seq_len"], t["config"]["doc_stride"], t["grid_point"]["learning_rate"])
        for t in squad
    } == {(384, 128, 5e-5)}
    glue = {t["grid_point"]["learning_rate"] for t in plan["finetune"] if t["task"] == "mrpc"}
    assert glue == {5e-5, 4e-5, 3e-5, 2e-5}
    # Hub-sourced tasks: the standard split's size, not 0 (SQuAD v1.1 train: 87,599 questions)
    assert squad[0]["tokens"] == 3 * 87_599 * 384 and squad[0]["flops"] > 0
    assert plan["totals"]["gpu_hours"] > 0 and plan["totals"]["assumed"]["mfu"] == 0.4


def test_plan_is_a_dry_run_before_the_data_exists_and_run_refuses(tmp_path: Path):
    matrix = tmp_path / "m.toml"
    text = (REPO / "matrices/demo.toml").read_text()
    matrix.write_text(text.replace('tasks = ["syn_agree", "syn_chain"]', 'tasks = ["rte"]'))
    planned = bertabl("plan", str(matrix), "--set", f"data.glue_dir={tmp_path / 'absent'}")
    assert planned.returncode == 0, planned.stderr
    assert "warning:" in planned.stdout and "data.glue_dir (task rte)" in planned.stdout
    assert "provisional ids" in planned.stdout
    run_dir = tmp_path / "run"
    ran = bertabl(
        "run",
        str(matrix),
        "--set",
        f"data.glue_dir={tmp_path / 'absent'}",
        "--run-dir",
        str(run_dir),
    )
    assert_user_error(ran, "data.glue_dir (task rte)", "file not found")
    assert not run_dir.exists()  # refused before writing anything


def test_report_without_a_target_reports_the_newest_run(tmp_path: Path):
    import os
    import time

    from bertabl.matrix import build_plan, load_matrix
    from bertabl.orchestrate.store import RunStore

    matrix, source = load_matrix(REPO / "matrices/demo.toml")
    for name in ("older", "newer"):
        RunStore(tmp_path / "runs" / name).write_manifest(
            build_plan(matrix).matrix.model_dump(mode="json"), source.to_dict()
        )
        time.sleep(0.05)
    os.utime(tmp_path / "runs" / "older" / "matrix.json")  # touched last: the newest
    result = bertabl("report", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "newest of 2 runs: runs/older (others: runs/newer)" in result.stdout
    assert (tmp_path / "runs" / "older" / "demo.md").is_file()
    assert not (tmp_path / "runs" / "newer" / "demo.md").exists()
    assert_user_error(bertabl("report", cwd=tmp_path / "runs"), "no runs here")


def _piped(args: list[str], monkeypatch) -> str:
    """What `bertabl ARGS | less` (or a CI log) shows: stdout is not a terminal there, and rich
    assumes 80 columns."""
    from typer.testing import CliRunner

    from bertabl.cli import app

    monkeypatch.setenv("COLUMNS", "80")
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return result.output


def test_a_piped_plan_is_never_cut_and_names_each_fine_tunes_row_and_head(monkeypatch):
    from bertabl.matrix import build_plan, load_matrix

    output = _piped(["plan", "matrices/table7.toml"], monkeypatch)
    assert "…" not in output
    plan = build_plan(load_matrix(REPO / "matrices/table7.toml")[0], dry_run=True)
    lines = output.splitlines()
    [pretraining] = [line for line in lines if line.startswith(f" {plan.pretrain[0].id} ")]
    rows = [r.name for r in plan.rows]  # Table 7: one pre-trained model, seven rows
    assert ", ".join(rows) in pretraining and f"{plan.pretrain[0].flops:.2e}" in pretraining
    seen = set()
    for trial in plan.finetune:
        [line] = [line for line in lines if line.startswith(f" {trial.id} ")]
        row, point = line.split()[1], dict(trial.grid_point)
        assert row in rows
        # Table 7's rows: fine-tuning (BERT's linear head), then one per feature mode
        assert ("linear" if row == "fine_tuning" else f"features: {row}") in line
        assert line.split()[-4:] == [
            f"{point['learning_rate']:g}", str(point["epochs"]), str(trial.restart),
            f"{trial.flops:.2e}",
        ]  # fmt: skip
        seen.add((row, point["learning_rate"], trial.restart))
    assert len(seen) == len(plan.finetune) == 28  # every trial told apart by what it shows


def test_a_piped_status_is_never_cut(tmp_path: Path, monkeypatch):
    from bertabl.matrix import build_plan
    from bertabl.matrix.load import tomllib, validate
    from bertabl.orchestrate.record import Status
    from bertabl.orchestrate.store import RunStore
    from tests.conftest import TINY_MATRIX

    raw = tomllib.loads(TINY_MATRIX)
    raw["pretrain"]["variants"][0]["name"] = "a_row_name_much_longer_than_eighty_columns_allow"
    matrix = validate(raw, "m.toml")
    plan = build_plan(matrix)
    store = RunStore(tmp_path)
    store.write_manifest(matrix.model_dump(mode="json"), {"path": "m.toml"})
    error = "RuntimeError: " + "a long reason the trial failed, " * 4 + "in full"
    trial = plan.finetune[0]
    store.write_record(trial.id, trial.config.model_dump(mode="json"), Status.FAILED, error=error)
    output = _piped(["status", str(tmp_path)], monkeypatch)
    assert "…" not in output
    [line] = [line for line in output.splitlines() if line.startswith(f" {trial.id} ")]
    assert plan.describe(trial.id) in line and error in line
    assert "a_row_name_much_longer_than_eighty_columns_allow" in output  # the rows' column
