"""bench/gpu_check.sh, the prepared GPU run: its mechanics, checked without a GPU."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import pytest
import torch

from tests.conftest import REPO

SCRIPT = REPO / "bench" / "gpu_check.sh"
pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


def _run(*steps: str, tmp_path, **env) -> subprocess.CompletedProcess:
    environment = os.environ | {"OUT": str(tmp_path), "PYTHON": sys.executable} | env
    return subprocess.run(
        ["bash", str(SCRIPT), *steps], capture_output=True, text=True, env=environment, timeout=120
    )


def test_the_script_parses_and_its_documented_steps_are_its_steps():
    assert subprocess.run(["bash", "-n", str(SCRIPT)]).returncode == 0
    text = SCRIPT.read_text()
    documented = re.findall(r"^#   ([a-z-]+) {2,}", text, re.M)
    handled = re.findall(r"^    ([a-z-]+)\)$", text, re.M)
    default = re.search(r"STEPS=\(([a-z -]+)\)", text).group(1).split()
    assert documented == handled == default
    assert "-m gpu" in text and "gpus_per_trial=0.25" in text and "--model base" in text


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a CPU host")
def test_without_a_gpu_it_stops_before_checking_nothing(tmp_path):
    result = _run(tmp_path=tmp_path)
    assert result.returncode == 1 and "sees no CUDA GPU: nothing to check" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_step_logs_to_out_and_the_summary_names_it(tmp_path):
    result = _run("environment", tmp_path=tmp_path, BERTABL_GPU_CHECK_ON_CPU="1")
    assert result.returncode == 0, result.stderr
    assert "torch" in (tmp_path / "environment.log").read_text()
    summary = result.stdout.split("=== summary")[1].splitlines()[1:]
    assert len(summary) == 1 and re.fullmatch(r"environment +ok +\d+s", summary[0])
    bad = _run("nonsense", tmp_path=tmp_path, BERTABL_GPU_CHECK_ON_CPU="1")
    assert bad.returncode == 2 and "unknown step: nonsense" in bad.stderr
