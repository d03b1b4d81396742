"""`bertabl slurm` without a Slurm: time limits, the rendered script (known content, valid
bash), what sinfo says, node-local filesystems, and the refusals before queueing."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bertabl.cli import app
from bertabl.errors import UserError
from bertabl.io import tomllib
from bertabl.launch import slurm
from bertabl.launch.slurm import SlurmJob, check_job, fill, parse_sinfo_line, parse_time, render
from bertabl.matrix import build_plan
from bertabl.matrix.load import validate
from tests.conftest import TINY_MATRIX

runner = CliRunner()


def _plan(text: str = TINY_MATRIX):
    return build_plan(validate(tomllib.loads(text), origin="tiny.toml"), "tiny.toml")


def _job(**changes) -> SlurmJob:
    fields = {
        "matrix": Path("/shared/m/tiny.toml"),
        "run_dir": Path("/shared/runs/tiny"),
        "script": Path("/shared/runs/tiny/slurm/tiny.sbatch"),
        "workdir": Path("/shared/m"),
        "job_name": "bertabl-tiny",
        "setup": ["source /shared/venv/bin/activate"],
    }
    return SlurmJob(**(fields | changes))


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30", 1800),  # minutes
        ("1:30", 90),  # minutes:seconds
        ("12:00:00", 43200),
        ("1-00:00:00", 86400),
        ("2-12", 216000),  # days-hours
        ("1-02:03", 93780),  # days-hours:minutes
        ("0-00:00:10", 10),
    ],
)
def test_slurm_time_formats(text: str, seconds: int):
    assert parse_time(text) == seconds


@pytest.mark.parametrize("text", ["abc", "1:2:3:4", "0", "-5", "1h"])
def test_a_bad_time_is_one_line(text: str):
    with pytest.raises(UserError, match=r"--time"):
        parse_time(text)


def test_bertabl_stops_five_minutes_before_the_limit_or_a_quarter_of_a_short_one():
    assert _job(time="24:00:00").lead == 300
    assert _job(time="00:10:00").lead == 150
    assert _job(time="00:02:00").lead == 30
    assert _job(time="00:02:00", stop_before=45).lead == 45


def test_the_script_has_the_allocation_the_signal_and_the_run():
    text = render(
        _job(
            nodes=2,
            cpus_per_node=8,
            gpus_per_node=4,
            mem="64G",
            time="12:00:00",
            partition="gpu",
            account="lab",
            requeues=3,
            overrides=["finetune.restarts=3", 'finetune.tasks=["syn_agree"]'],
            scale="tiny",
            sbatch_options=["--constraint=a100"],
        )
    )
    directives = [line for line in text.splitlines() if line.startswith("#SBATCH")]
    assert directives == [
        "#SBATCH --job-name=bertabl-tiny",
        "#SBATCH --nodes=2",
        "#SBATCH --ntasks-per-node=1",
        "#SBATCH --cpus-per-task=8",
        "#SBATCH --gres=gpu:4",
        "#SBATCH --mem=64G",
        "#SBATCH --time=12:00:00",
        "#SBATCH --signal=B:USR1@300",
        "#SBATCH --chdir=/shared/m",
        "#SBATCH --output=/shared/runs/tiny/slurm/%x-%j.out",
        "#SBATCH --open-mode=append",
        "#SBATCH --partition=gpu",
        "#SBATCH --account=lab",
        "#SBATCH --requeue",
        "#SBATCH --constraint=a100",
    ]
    lines = text.splitlines()
    assert "source /shared/venv/bin/activate" in lines
    assert "RUN_DIR=/shared/runs/tiny" in lines and "MATRIX=/shared/m/tiny.toml" in lines
    assert "INTERRUPTED=3  # bertabl's exit status when it stopped on request" in lines
    assert "REQUEUES=3" in lines
    assert (
        '  BERTABL=(bertabl run "$MATRIX" --run-dir "$RUN_DIR" --set finetune.restarts=3 '
        "--set 'finetune.tasks=[\"syn_agree\"]' --scale tiny)"
    ) in lines
    assert '  BERTABL=(bertabl resume "$RUN_DIR")' in lines
    assert "RAY_NODE=(ray start --block --disable-usage-stats --num-gpus=4" in lines
    assert "trap 'on_signal \"the time limit is near (--signal)\"' USR1" in lines
    assert '    scontrol requeue "$SLURM_JOB_ID"' in lines
    assert "{{" not in text
    done = subprocess.run(["bash", "-n"], input=text, text=True, capture_output=True)
    assert done.returncode == 0, done.stderr  # valid bash


def test_whole_nodes_without_cpus_and_no_requeue_by_default():
    text = render(_job())
    assert "#SBATCH --exclusive" in text and "#SBATCH --no-requeue" in text
    assert "--gres" not in text and "--num-gpus=0" in text and "--partition" not in text


def test_the_default_setup_puts_this_python_first(monkeypatch):
    monkeypatch.setattr(slurm.sys, "executable", "/opt/env/bin/python")
    assert 'export PATH=/opt/env/bin:"$PATH"' in render(_job(setup=[])).splitlines()


def test_fill_wants_every_placeholder_and_nothing_more():
    assert fill("a {{x}} b", {"x": "1"}) == "a 1 b"
    with pytest.raises(ValueError, match="placeholders"):
        fill("a {{x}} {{y}}", {"x": "1"})
    with pytest.raises(ValueError, match="placeholders"):
        fill("a {{x}}", {"x": "1", "z": "2"})


def test_sinfo_lines():
    assert parse_sinfo_line("debug*|2|1|(null)|infinite") == {
        "partition": "debug",
        "default": True,
        "nodes": 2,
        "cpus": 1,
        "gpus": 0,
        "time_limit": None,
        "time_text": "infinite",
    }
    gpu = parse_sinfo_line("gpu|16|64|gpu:a100:4(S:0-1),tmpdisk:100|2-00:00:00")
    assert (gpu["gpus"], gpu["cpus"], gpu["time_limit"], gpu["default"]) == (4, 64, 172800, False)
    assert parse_sinfo_line("x|1|8+|gpu:2|30:00")["gpus"] == 2


def _groups(line: str = "debug*|2|4|(null)|01:00:00") -> list[dict]:
    return [parse_sinfo_line(line)]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"gpus_per_node": 1}, "partition debug has no GPUs"),
        ({"nodes": 3}, r"--nodes 3: partition debug has 2 node\(s\)"),
        ({"cpus_per_node": 8}, "partition debug's nodes have at most 4"),
        ({"time": "02:00:00"}, "partition debug allows at most 01:00:00"),
        ({"time": "00:10:00", "stop_before": 600}, "--stop-before 600: must be"),
        ({"run_dir": Path("/shared/my runs/x")}, "without spaces"),
    ],
)
def test_what_cannot_work_is_refused_before_queueing(changes: dict, message: str):
    with pytest.raises(UserError, match=message):
        check_job(_job(**({"time": "00:30:00"} | changes)), _plan(), _groups())


def test_trials_that_fit_no_node_of_the_job_are_refused(monkeypatch):
    monkeypatch.setattr(slurm, "local_filesystem", lambda path, mounts=None: None)
    big = TINY_MATRIX + "\n[resources]\ncpus_per_trial = 2\n"
    asked = r"the job \(--nodes 1 --cpus-per-node 1 --gpus-per-node 0\) cannot run it: "
    with pytest.raises(UserError, match=asked + r"resources.cpus_per_trial = 2"):
        check_job(_job(time="01:00:00", cpus_per_node=1), _plan(big), None)
    assert check_job(_job(time="01:00:00", cpus_per_node=2), _plan(big), None) == []
    # whole nodes (--exclusive) where sinfo does not answer: their CPUs are unknown
    assert check_job(_job(time="01:00:00"), _plan(big), None) == []


MOUNTS = """\
/dev/sda1 / ext4 rw 0 0
server:/export /shared nfs4 rw 0 0
tmpfs /tmp tmpfs rw 0 0
/dev/sdb1 /shared/scratch xfs rw 0 0
"""


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        ("/shared/runs/x", None),  # NFS: every node may see it
        ("/shared/scratch/x", "xfs"),  # the longest mount point wins
        ("/tmp/x", "tmpfs"),
        ("/home/me/runs", "ext4"),
    ],
)
def test_node_local_filesystems(path: str, kind: str | None):
    assert slurm.local_filesystem(Path(path), MOUNTS) == kind


def test_a_run_directory_on_a_local_disk_is_a_warning(monkeypatch):
    monkeypatch.setattr(slurm, "local_filesystem", lambda p, mounts=None: "ext4")
    (warning,) = check_job(_job(time="01:00:00"), _plan(), None)
    assert warning.startswith("on a node-local filesystem: the run directory /shared/runs/tiny")
    assert "must see them at the same path" in warning


def test_cli_writes_the_script_and_says_how_to_submit(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(slurm, "partition_info", lambda name: _groups("debug*|2|4|(null)|infinite"))
    matrix = tmp_path / "tiny.toml"
    matrix.write_text(TINY_MATRIX)
    run_dir = tmp_path / "runs" / "tiny"
    args = ["slurm", str(matrix), "--run-dir", str(run_dir), "--nodes", "2"]
    result = runner.invoke(app, [*args, "--cpus-per-node", "2", "--time", "04:00:00"])
    assert result.exit_code == 0, result.output
    script = run_dir / "slurm" / "tiny.sbatch"
    assert f"submit with: sbatch {script}" in result.output
    assert "#SBATCH --nodes=2" in script.read_text() and script.stat().st_mode & 0o111
    assert (run_dir / "slurm").is_dir() and not (run_dir / "matrix.json").exists()

    bad = runner.invoke(app, [*args, "--gpus-per-node", "1"])
    assert bad.exit_code == 2
    assert bad.output.strip().splitlines() == [
        "error: --gpus-per-node 1: partition debug has no GPUs (sinfo lists no gpu GRES); "
        "choose a GPU partition (--partition) or --gpus-per-node 0"
    ]


def test_submit_without_sbatch_says_where_the_script_is(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(slurm.shutil, "which", lambda name: None)
    with pytest.raises(UserError, match="there is no sbatch here; the script is written"):
        slurm.submit(tmp_path / "x.sbatch")
