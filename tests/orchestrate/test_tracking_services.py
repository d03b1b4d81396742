"""W&B and MLflow through Ray Tune's callbacks: a whole tiny run tracked to both, read back from
W&B's offline run folders (the .wandb record log, parsed with wandb's protobuf classes) and
from MLflow's SQLite store (MlflowClient); a resumed trial finding its MLflow run again; the
one-line errors. Offline, no API key. Tests that need the `wandb` or `mlflow` extra skip
without it (CI installs both: `pip install -e ".[test,wandb,mlflow]"`)."""

from __future__ import annotations

import csv
import io
import json
import struct
import sys
import zlib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bertabl.cli import app
from bertabl.errors import UserError
from bertabl.io import tomllib
from bertabl.matrix import build_plan
from bertabl.matrix.load import validate
from bertabl.orchestrate.tracking import require, run_names, tracking_lines, wandb_run_id
from tests.conftest import TINY_MATRIX

# The tiny matrix cut to one row and one task (a pre-training and 2 fine-tunes: each trial's
# W&B run is a process of its own), tracked to both services.
NO_NSP = """[[pretrain.variants]]
name = "no_nsp"
label = "MLM only"
pretrain = { objective = "mlm" }
"""
ONE_ROW = TINY_MATRIX.replace(NO_NSP, "").replace('["syn_agree", "syn_chain"]', '["syn_agree"]')
TRACKED = (
    ONE_ROW
    + """
[tracking]
wandb = { project = "bertabl-test", mode = "offline" }
mlflow = { experiment = "tiny-tracked" }
"""
)


def _plan(text: str = TRACKED):
    return build_plan(validate(tomllib.loads(text), origin="tiny.toml"), "tiny.toml")


def wandb_records(path: Path) -> list:
    """Every Record of a .wandb file: a ':W&B' header (7 bytes), then LevelDB's log format
    (32 KiB blocks of chunks: CRC-32 of type + data, length, type FULL/FIRST/MIDDLE/LAST)."""
    from wandb.proto.wandb_internal_pb2 import Record

    data, block = path.read_bytes(), 32768
    assert data[:4] == b":W&B"
    position, bodies, pending = 7, [], b""
    while position + 7 <= len(data):
        left = block - position % block
        if left < 7:  # a chunk header never straddles a block: zero padding
            position += left
            continue
        crc, length, kind = struct.unpack_from("<IHB", data, position)
        body = data[position + 7 : position + 7 + length]
        if kind == 0:  # padding to the block's end
            position += left
            continue
        assert zlib.crc32(body, zlib.crc32(bytes([kind]))) == crc, f"{path}: bad chunk"
        position += 7 + length
        if kind in (1, 4):  # FULL, LAST
            bodies.append(pending + body)
            pending = b""
        else:  # FIRST, MIDDLE
            pending += body
    return [Record.FromString(body) for body in bodies]


def wandb_run(folder: Path) -> dict:
    """A W&B offline run folder as {id, name, group, job_type, config, history}."""
    (log,) = folder.glob("run-*.wandb")
    run: dict = {"history": []}
    for record in wandb_records(log):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            r = record.run
            run |= {"id": r.run_id, "name": r.display_name, "group": r.run_group}
            run |= {"job_type": r.job_type, "project": r.project}
            run["config"] = {u.key: json.loads(u.value_json) for u in r.config.update}
        elif kind == "history":
            # an item names its key in `key` or, as wandb-core writes it, in `nested_key`
            items = {
                i.key or "/".join(i.nested_key): json.loads(i.value_json)
                for i in record.history.item
            }
            run["history"].append({k: v for k, v in items.items() if not k.startswith("_")})
            run["history"][-1]["_step"] = record.history.step.num
    return run


# -- no service needed -----------------------------------------------------------------------


def test_a_missing_extra_is_one_line_naming_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # import fails as if not installed
    with pytest.raises(UserError, match=r"pip install -c constraints.txt 'bertabl\[wandb\]'"):
        require("wandb")


def test_run_ids_follow_the_run_directory(tmp_path: Path):
    assert wandb_run_id(tmp_path / "a", "ft-1234abcd") == wandb_run_id(
        tmp_path / "a", "ft-1234abcd"
    )
    assert wandb_run_id(tmp_path / "a", "ft-1234abcd") != wandb_run_id(
        tmp_path / "b", "ft-1234abcd"
    )
    assert wandb_run_id(tmp_path / "a", "ft-1234abcd").startswith("ft-1234abcd-")


def test_run_says_where_the_services_log(tmp_path: Path):
    lines = tracking_lines(_plan(), tmp_path)
    assert lines[1] == (
        f"W&B (offline): {tmp_path}/wandb/offline-run-* (upload with `wandb sync "
        f"{tmp_path}/wandb/offline-run-*` to project bertabl-test)"
    )
    uri = f"sqlite:///{tmp_path.resolve()}/mlflow.db"
    assert (
        lines[2]
        == f"MLflow: experiment tiny-tracked at {uri} (mlflow ui --backend-store-uri {uri})"
    )


# -- MLflow ----------------------------------------------------------------------------------


class FakeTrial:
    """What the callbacks read of a Tune trial: its config (a new driver makes a new one)."""

    def __init__(self, trial):
        from bertabl.matrix.resources import TrialResources
        from bertabl.orchestrate.params import RunSettings, TrialParams

        stage = "pretrain" if trial.id.startswith("pt") else "finetune"
        resources = TrialResources(stage, 1, 1, 0, "PACK")
        run = RunSettings("run", 0, 2, "fp32", False, 0, "train", {})
        self.config = TrialParams(trial.id, stage, trial.config, resources, run).tune_config()


def test_a_resumed_trial_continues_its_mlflow_run(tmp_path: Path):
    pytest.importorskip("mlflow")
    from mlflow import MlflowClient

    from bertabl.orchestrate.tracking_services import MlflowRuns, preflight

    plan = _plan()
    preflight(plan, tmp_path)
    trial = plan.pretrain[0]
    first = MlflowRuns(plan, tmp_path)
    first.setup()
    for step in (25, 50):  # this driver dies after step 50
        first.log_trial_result(1, FakeTrial(trial), {"step": step, "loss": 5.0 - step / 25})
    resumed = MlflowRuns(plan, tmp_path)  # `bertabl resume`: a new driver, a new Tune trial
    resumed.setup()
    again = FakeTrial(trial)
    resumed.log_trial_result(1, again, {"step": 75, "loss": 1.5, "training_iteration": 1})
    resumed.log_trial_end(again)

    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    experiment = client.get_experiment_by_name("tiny-tracked")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.run_name == run_names(plan)[trial.id] == "pretrain/bert_base"
    assert run.info.status == "FINISHED"
    assert run.data.params["trial_id"] == trial.id
    assert run.data.params["pretrain/objective"] == "mlm_nsp"
    history = client.get_metric_history(run.info.run_id, "loss")
    assert [(m.step, m.value) for m in history] == [(25, 4.0), (50, 3.0), (75, 1.5)]
    assert set(run.data.metrics) == {"loss"}  # Tune's own keys are not curves
    assert experiment.artifact_location == (tmp_path / "mlflow-artifacts").as_uri()


def test_an_unusable_mlflow_store_is_one_line(tmp_path: Path):
    pytest.importorskip("mlflow")
    from bertabl.orchestrate.tracking_services import preflight

    bad = TRACKED.replace('experiment = "tiny-tracked"', 'tracking_uri = "nosuch://x"')
    with pytest.raises(UserError, match=r"tracking.mlflow.tracking_uri = 'nosuch://x': MLflow"):
        preflight(_plan(bad), tmp_path)


def test_wandb_online_without_a_key_is_one_line(tmp_path: Path, monkeypatch):
    pytest.importorskip("wandb")
    from bertabl.orchestrate.tracking_services import preflight

    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc login either
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))
    online = TRACKED.replace('mode = "offline"', 'mode = "online"')
    with pytest.raises(UserError, match="needs a W&B API key: run `wandb login`"):
        preflight(_plan(online), tmp_path)


# -- a whole run, both services --------------------------------------------------------------


@pytest.fixture(scope="module")
def tracked_run(tmp_path_factory):
    pytest.importorskip("wandb")
    pytest.importorskip("mlflow")
    base = tmp_path_factory.mktemp("tracked")
    matrix = base / "tiny.toml"
    matrix.write_text(TRACKED)
    env = {
        "WANDB_MODE": "offline",  # and no API key: nothing leaves this machine
        "WANDB_API_KEY": "",
        "WANDB_CONFIG_DIR": str(base / "wandb-config"),
        "WANDB_CACHE_DIR": str(base / "wandb-cache"),
        "WANDB_DATA_DIR": str(base / "wandb-data"),
    }
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        patch.delenv("WANDB_API_KEY")
        result = CliRunner().invoke(app, ["run", str(matrix), "--run-dir", str(base / "run")])
    assert result.exit_code == 0, result.output
    plan = build_plan(validate(tomllib.loads(TRACKED), origin=str(matrix)), str(matrix))
    records = {
        r["id"]: r
        for r in (json.loads(p.read_text()) for p in (base / "run/trials").glob("*/record.json"))
    }
    return base / "run", plan, records, result.output


@pytest.mark.slow
def test_wandb_offline_runs_read_back_one_per_trial(tracked_run):
    run_dir, plan, records, output = tracked_run
    assert "W&B (offline):" in output and "tracking: W&B: the report" in output
    runs = [wandb_run(f) for f in sorted((run_dir / "wandb").glob("offline-run-*"))]
    by_id = {r["config"].get("trial_id", r["name"]): r for r in runs}
    names = run_names(plan)
    assert len(runs) == len(names) + 1 and set(by_id) == {*names, "report"}  # + the report's
    for trial_id, name in names.items():
        run, record = by_id[trial_id], records[trial_id]
        assert (run["name"], run["group"], run["project"]) == (name, "tiny", "bertabl-test")
        assert run["id"] == wandb_run_id(run_dir, trial_id)
        assert run["job_type"] == record["stage"]
        config = {k: v for k, v in run["config"].items() if k not in ("_wandb", "run")}
        assert config == {"trial_id": trial_id, "stage": record["stage"], **record["config"]}
        x = "step" if record["stage"] == "pretrain" else "epoch"
        assert [h["_step"] for h in run["history"]] == [h[x] for h in record["history"]]
        metric = "loss" if x == "step" else "dev_accuracy"
        assert [h[metric] for h in run["history"]] == [
            pytest.approx(h[metric]) for h in record["history"]
        ]

    report = by_id["report"]
    (table,) = (run_dir / "wandb").glob("offline-run-*-report-*/files/media/table/*.table.json")
    logged = json.loads(table.read_text())
    headline = list(csv.reader(io.StringIO((run_dir / "tiny.headline.csv").read_text())))
    assert logged["columns"] == headline[0] and logged["data"] == headline[1:]
    assert [row[1:4] for row in logged["data"]] == [["MLM + NSP", "ours", "syn_agree (accuracy)"]]
    assert report["job_type"] == "report"
    assert report["history"][0]["headline/_type"] == "table-file"  # a W&B Table


@pytest.mark.slow
def test_mlflow_sqlite_store_reads_back_one_run_per_trial(tracked_run):
    from mlflow import MlflowClient

    run_dir, plan, records, _ = tracked_run
    client = MlflowClient(f"sqlite:///{run_dir.resolve()}/mlflow.db")
    experiment = client.get_experiment_by_name("tiny-tracked")
    runs = {r.info.run_name: r for r in client.search_runs([experiment.experiment_id])}
    names = run_names(plan)
    assert set(runs) == {*names.values(), "report"}
    for trial_id, name in names.items():
        run, record = runs[name], records[trial_id]
        assert run.info.status == "FINISHED" and run.data.tags["bertabl.trial_id"] == trial_id
        assert run.data.params["stage"] == record["stage"]
        if record["stage"] == "finetune":
            assert run.data.params["task"] == record["config"]["task"]
            assert run.data.params["learning_rate"] == str(record["config"]["learning_rate"])
            history = client.get_metric_history(run.info.run_id, "dev_accuracy")
            expected = [(h["epoch"], pytest.approx(h["dev_accuracy"])) for h in record["history"]]
        else:
            history = client.get_metric_history(run.info.run_id, "loss")
            expected = [(h["step"], pytest.approx(h["loss"])) for h in record["history"]]
        assert [(m.step, m.value) for m in history] == expected
    report = runs["report"]
    files = {f.path for f in client.list_artifacts(report.info.run_id)}
    assert files == {"tiny.md", "tiny.trials.csv", "tiny.curves.png", "tiny.headline.csv"}
