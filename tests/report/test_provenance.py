"""Provenance's git commit: from the checkout, or from the Docker image's build arg."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from bertabl.report.provenance import GIT_COMMIT_ENV, git_head


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
