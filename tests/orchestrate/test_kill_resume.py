"""Kill a real `bertabl run` with SIGKILL, or stop it with SIGTERM (what a batch scheduler sends),
resume it, and get the uninterrupted run's results."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from bertabl.orchestrate.interrupt import INTERRUPTED_EXIT
from tests.conftest import REPO, TINY_MATRIX, run_results

pytestmark = pytest.mark.slow

# Long enough pre-training and fine-tuning (3 epochs of 16 steps) that a kill lands mid-trial.
KILL_MATRIX = (
    TINY_MATRIX.replace("steps = 10", "steps = 150")
    .replace("epochs = [1]", "epochs = [3]")
    .replace("train_examples = 64", "train_examples = 256")
    + "\n[checkpointing]\nevery_steps = 5\n"
)


def _start(*args: str) -> subprocess.Popen:
    # A new session, so the kill takes the driver and the Ray processes it started, like a job
    # scheduler killing the job.
    return subprocess.Popen(
        [sys.executable, "-m", "bertabl", *args],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def _kill_when(process: subprocess.Popen, run_dir: Path, pattern: str, timeout: float = 240):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if list((run_dir / "trials").glob(pattern)):
            # Everything the run started, as a job scheduler's kill of the job's cgroup would:
            # Ray puts each worker in a process group of its own, and a worker outliving the
            # driver could still finish the trial it is on (as it may in real life; harmless,
            # but then this test would not test a resume mid-trial).
            tree = psutil.Process(process.pid).children(recursive=True)
            os.killpg(process.pid, signal.SIGKILL)
            for child in tree:
                with contextlib.suppress(psutil.NoSuchProcess):
                    child.kill()
            process.wait()
            return
        if process.poll() is not None:
            pytest.fail("the run finished before it could be killed")
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    pytest.fail(f"no {pattern} appeared within {timeout}s")


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple[Path, dict]:
    base = tmp_path_factory.mktemp("reference")
    matrix = base / "tiny.toml"
    matrix.write_text(KILL_MATRIX)
    result = subprocess.run(
        [sys.executable, "-m", "bertabl", "run", str(matrix), "--run-dir", str(base / "run")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return matrix, run_results(base / "run")


@pytest.mark.parametrize(
    "stage_pattern",
    ["pt-*/checkpoints/ckpt-*.pt", "ft-*/checkpoints/ckpt-*.pt"],
    ids=["mid-pretraining", "mid-finetuning"],
)
def test_killed_run_resumes_to_identical_results(reference, tmp_path: Path, stage_pattern: str):
    matrix, expected = reference
    run_dir = tmp_path / "run"
    process = _start("run", str(matrix), "--run-dir", str(run_dir))
    _kill_when(process, run_dir, stage_pattern)
    unfinished = [
        p
        for p in (run_dir / "trials").glob(stage_pattern.split("/")[0])
        if not (p / "record.json").exists()
    ]
    assert unfinished, "the kill should leave a trial unfinished"

    resumed = subprocess.run(
        [sys.executable, "-m", "bertabl", "resume", str(run_dir)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr

    records = {
        json.loads(p.read_text())["id"]: json.loads(p.read_text())
        for p in (run_dir / "trials").glob("*/record.json")
    }
    assert any(r["timings"].get("resumed_from_step") for r in records.values())
    assert run_results(run_dir) == expected  # metrics, histories and weights, to the bit


def test_sigterm_stops_the_run_cleanly_and_it_resumes_to_identical_results(reference, tmp_path):
    """SIGTERM to the driver alone (as the Slurm script sends it): the running trials stop,
    none is recorded as failed, the report is written, the exit status says "resumable"."""
    matrix, expected = reference
    run_dir = tmp_path / "run"
    process = subprocess.Popen(
        [sys.executable, "-m", "bertabl", "run", str(matrix), "--run-dir", str(run_dir)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.time() + 240
    while not list((run_dir / "trials").glob("ft-*/checkpoints/ckpt-*.pt")):
        assert process.poll() is None, "the run finished before it could be stopped"
        assert time.time() < deadline, "no fine-tuning checkpoint within 240 s"
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=120)

    assert process.returncode == INTERRUPTED_EXIT, output
    assert "interrupted (SIGTERM)" in output and f"bertabl resume {run_dir}" in output
    records = [json.loads(p.read_text()) for p in (run_dir / "trials").glob("*/record.json")]
    assert {r["status"] for r in records} == {"done"}  # nothing failed or blocked
    assert len(records) < len(expected)
    assert (run_dir / "tiny.md").is_file()  # the report of what finished

    resumed = subprocess.run(
        [sys.executable, "-m", "bertabl", "resume", str(run_dir)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert run_results(run_dir) == expected
