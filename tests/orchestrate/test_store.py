"""The run store: atomic records, the run lock, attempts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bertabl.errors import UserError
from bertabl.orchestrate.store import RunStore
from tests.conftest import REPO


def test_a_second_run_on_the_same_directory_is_refused(tmp_path: Path):
    store = RunStore(tmp_path)
    assert not store.is_locked()
    with store.lock():
        assert store.is_locked()
        with pytest.raises(UserError, match="in use by another bertabl run"):
            with RunStore(tmp_path).lock():
                pass
        # ... and from another process, through the CLI: exit 2, nothing run
        (tmp_path / "matrix.toml").write_text((REPO / "matrices/demo.toml").read_text())
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "bertabl",
                "run",
                str(tmp_path / "matrix.toml"),
                "--run-dir",
                str(tmp_path),
            ],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 2
        assert "in use by another bertabl run (pid" in result.stderr
    assert not store.is_locked()  # released on exit (and by the kernel if the holder dies)


def test_records_and_attempts(tmp_path: Path):
    store = RunStore(tmp_path)
    config = {"stage": "pretrain"}
    assert store.record("pt-00000000") is None and store.attempts("pt-00000000") == 0
    assert store.count_attempt("pt-00000000") == 1
    assert store.count_attempt("pt-00000000") == 2
    store.write_record("pt-00000000", config, "done", metrics={"loss": 1.5})
    assert store.is_done("pt-00000000")
    record = json.loads((tmp_path / "trials/pt-00000000/record.json").read_text())
    assert record["metrics"] == {"loss": 1.5} and record["status"] == "done"
    assert list(store.records()) == ["pt-00000000"]
    leftovers = [p.name for p in (tmp_path / "trials/pt-00000000").iterdir() if ".tmp" in p.name]
    assert leftovers == []  # atomic writes leave no temp files behind
