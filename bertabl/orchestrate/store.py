"""The run directory: one record per trial, written atomically, the single source of truth.

Layout:
    runs/<matrix name>/
      matrix.json              the resolved matrix + where it came from (path, hash, overrides)
      trials/<trial id>/       record.json, and the trial's artifacts (model/ for pre-training)
      tune/                    Ray Tune's own experiment state (used for its restore machinery)

A record's `status` is one of: done, failed, blocked. A trial with no record has not finished.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from bertabl.errors import UserError

DONE, FAILED, BLOCKED = "done", "failed", "blocked"


class RunStore:
    """Reads and writes the records of one run directory."""

    def __init__(self, root: str | Path):
        self.root = Path(root).resolve()  # Ray trials run elsewhere: keep every path absolute

    @property
    def tune_dir(self) -> Path:
        return self.root / "tune"

    def trial_dir(self, trial_id: str) -> Path:
        return self.root / "trials" / trial_id

    def model_dir(self, pretrain_id: str) -> Path:
        return self.trial_dir(pretrain_id) / "model"

    def record(self, trial_id: str) -> dict[str, Any] | None:
        path = self.trial_dir(trial_id) / "record.json"
        if not path.is_file():
            return None
        return json.loads(path.read_text())

    def records(self) -> dict[str, dict[str, Any]]:
        """Every record in the run, by trial id."""
        found = {}
        for path in sorted((self.root / "trials").glob("*/record.json")):
            record = json.loads(path.read_text())
            found[record["id"]] = record
        return found

    def is_done(self, trial_id: str) -> bool:
        record = self.record(trial_id)
        return record is not None and record["status"] == DONE

    def write_record(
        self,
        trial_id: str,
        config: dict[str, Any],
        status: str,
        metrics: dict[str, Any] | None = None,
        history: list[dict[str, Any]] | None = None,
        timings: dict[str, float] | None = None,
        error: str | None = None,
    ) -> dict[str, Any]:
        record = {
            "id": trial_id,
            "stage": config["stage"],
            "status": status,
            "config": config,
            "metrics": metrics or {},
            "history": history or [],
            "timings": timings or {},
            "error": error,
            "written_at": time.time(),
        }
        atomic_write_json(self.trial_dir(trial_id) / "record.json", record)
        return record

    def write_progress(self, trial_id: str, metrics: dict[str, Any]) -> None:
        """The latest metrics of a running trial (read by `bertabl status`)."""
        progress = {"metrics": metrics, "written_at": time.time()}
        atomic_write_json(self.trial_dir(trial_id) / "progress.json", progress)

    def progress(self, trial_id: str) -> dict[str, Any] | None:
        path = self.trial_dir(trial_id) / "progress.json"
        return json.loads(path.read_text()) if path.is_file() else None

    def write_manifest(self, matrix: dict[str, Any], source: dict[str, Any]) -> None:
        atomic_write_json(self.root / "matrix.json", {"matrix": matrix, "source": source})

    def manifest(self) -> dict[str, Any]:
        path = self.root / "matrix.json"
        if not path.is_file():
            raise UserError(
                f"{self.root}: not a bertabl run directory (no matrix.json); "
                "pass a run directory written by `bertabl run`, or the matrix file"
            )
        return json.loads(path.read_text())


def atomic_write_json(path: Path, data: Any) -> None:
    """Write JSON so a reader (or a crash) never sees a half-written file."""
    atomic_write(path, json.dumps(data, indent=2, sort_keys=True, default=str).encode())


def atomic_write(path: Path, data: bytes) -> None:
    """Write to a temp file beside `path`, fsync, then rename over `path` (atomic on POSIX)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
