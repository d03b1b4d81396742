"""Provenance: the git commit (from the checkout, or from the Docker image's build arg) and the
machines line, from the records' per-rank machine."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from bertabl.orchestrate.record import Record
from bertabl.report.provenance import GIT_COMMIT_ENV, git_head, machines_of
from tests.conftest import make_record


def test_outside_a_checkout_the_commit_comes_from_the_image(tmp_path, monkeypatch):
    monkeypatch.delenv(GIT_COMMIT_ENV, raising=False)
    assert git_head(tmp_path) is None  # an installed package, no build arg: no commit claimed
    monkeypatch.setenv(GIT_COMMIT_ENV, "0123abcd" * 5)
    assert git_head(tmp_path) == "0123abcd" * 5
    monkeypatch.setenv(GIT_COMMIT_ENV, "")  # `docker build` without --build-arg GIT_COMMIT
    assert git_head(tmp_path) is None


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_a_checkout_answers_for_itself(tmp_path, monkeypatch):
    monkeypatch.setenv(GIT_COMMIT_ENV, "from-the-image")
    git = ["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    (tmp_path / "bertabl").mkdir()
    (tmp_path / "bertabl" / "x.py").write_text("x = 1\n")
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "x"], check=True)
    head = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True).stdout
    assert git_head(tmp_path) == head.strip()
    (tmp_path / "bertabl" / "x.py").write_text("x = 2\n")
    assert git_head(tmp_path) == head.strip() + "-dirty"


def _record(status: str, *machines: str) -> Record:
    workers = [{"rank": i, "machine": m} for i, m in enumerate(machines)]
    return make_record("ft-0", status, workers=workers)


def test_machines_count_finished_trials_once_per_machine():
    records = {
        "pt-1": _record("done", "Xeon, 2 CPUs"),
        "ft-1": _record("done", "Xeon, 2 CPUs"),
        "ft-2": _record("done", "EPYC, 16 CPUs, NVIDIA H200", "EPYC, 16 CPUs, NVIDIA H200"),
        "ft-3": _record("failed", "Xeon, 2 CPUs"),  # only finished trials made the numbers
        "ft-4": make_record("ft-4", workers=[{"rank": 0}]),  # recorded before machines were
    }
    assert machines_of(records) == {"Xeon, 2 CPUs": 2, "EPYC, 16 CPUs, NVIDIA H200": 1}


def test_a_run_that_pretrains_nothing_says_so():
    from bertabl.report.provenance import data_lines

    data = {"corpus": "synthetic", "synthetic": {"seed": 0}}  # the data section's default
    assert data_lines(data, [])[0].startswith("Pre-training: **synthetic** corpus")
    assert data_lines(data, [], reads_corpus=False) == [
        "Pre-training: none in this run (its rows fine-tune checkpoints named by `from`, or "
        "untrained models)"
    ]
