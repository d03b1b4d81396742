"""The run directory: one record per trial, written atomically, the single source of truth.

Layout:
    runs/<matrix name>/
      matrix.json              the resolved matrix + where it came from (path, hash, overrides)
      plan.json                the plan the last run ran: trials, configs, rows, input files
      plans/<time>.json        earlier plans a run replaced (their finished trials stay here)
      trials/<trial id>/       record.json, and the trial's artifacts (model/ for pre-training)
      tune/                    Ray Tune's own experiment state (used for its restore machinery)

A record (orchestrate/record.py) says done, failed or blocked; a trial with no record has not
finished. This module alone reads and writes the files: everyone else gets typed records.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bertabl.errors import UserError
from bertabl.io import atomic_write, atomic_write_json
from bertabl.orchestrate.record import Progress, Record, Status, Timings, Worker
from bertabl.trial.files import model_dir_name

if TYPE_CHECKING:  # the plan's (de)serialisation is imported where a plan is read or written
    from bertabl.matrix.plan import Plan

RECORD = "record.json"
PLAN = "plan.json"
PLANS = "plans"  # earlier plans a run replaced, whose finished trials the new one lacks


class RunStore:
    """Reads and writes the records of one run directory."""

    def __init__(self, root: str | Path):
        self.root = Path(root).resolve()  # Ray trials run elsewhere: keep every path absolute

    @property
    def tune_dir(self) -> Path:
        return self.root / "tune"

    @property
    def cache_dir(self) -> Path:
        """Data the run's trials share: tokenised corpora, trained vocabularies."""
        return self.root / "cache"

    def trial_dir(self, trial_id: str) -> Path:
        return self.root / "trials" / trial_id

    def model_dir(self, pretrain_id: str, step: int | None = None) -> Path:
        """The pre-trained model: final, or as saved after `step` pre-training steps."""
        return self.trial_dir(pretrain_id) / model_dir_name(step)

    def record(self, trial_id: str) -> Record | None:
        path = self.trial_dir(trial_id) / RECORD
        if not path.is_file():
            return None
        return Record.model_validate_json(path.read_bytes())

    def records(self) -> dict[str, Record]:
        """Every record in the run, by trial id."""
        found = {}
        for path in sorted((self.root / "trials").glob(f"*/{RECORD}")):
            record = Record.model_validate_json(path.read_bytes())
            found[record.id] = record
        return found

    def is_done(self, trial_id: str) -> bool:
        record = self.record(trial_id)
        return record is not None and record.done

    def write_record(
        self,
        trial_id: str,
        config: dict[str, Any],
        status: Status,
        metrics: dict[str, Any] | None = None,
        history: list[dict[str, Any]] | None = None,
        timings: Timings | None = None,
        error: str | None = None,
        workers: list[Worker] | None = None,
    ) -> Record:
        """`workers`: where each rank of the trial ran (rank, node id and IP, pid, device)."""
        record = Record(
            id=trial_id,
            stage=config["stage"],
            status=status,
            config=config,
            metrics=metrics or {},
            history=history or [],
            timings=timings or Timings(),
            error=error,
            workers=workers or [],
            written_at=time.time(),
        )
        self._save(record)
        return record

    def update_metrics(self, trial_id: str, metrics: dict[str, Any]) -> None:
        """Add `metrics` to a finished trial's record (test-split scores, after selection)."""
        record = self.record(trial_id)
        if record is None:
            raise KeyError(f"{trial_id} has no record")
        self._save(record.model_copy(update={"metrics": record.metrics | metrics}))

    def _save(self, record: Record) -> None:
        atomic_write_json(self.trial_dir(record.id) / RECORD, record.to_json())

    def count_attempt(self, trial_id: str, what: str = "attempts") -> int:
        """Record that the trial starts (again); returns which attempt this is, from 1.
        `what` names the counter (a data-parallel trial also counts its worker group's starts).
        """
        path = self.trial_dir(trial_id) / what
        attempt = int(path.read_text()) + 1 if path.is_file() else 1
        atomic_write(path, str(attempt).encode())
        return attempt

    def attempts(self, trial_id: str) -> int:
        path = self.trial_dir(trial_id) / "attempts"
        return int(path.read_text()) if path.is_file() else 0

    def write_progress(self, trial_id: str, metrics: dict[str, Any]) -> None:
        """The latest metrics of a running trial (read by `bertabl status`)."""
        progress = {"metrics": metrics, "written_at": time.time()}
        atomic_write_json(self.trial_dir(trial_id) / "progress.json", progress)

    def progress(self, trial_id: str) -> Progress | None:
        path = self.trial_dir(trial_id) / "progress.json"
        return Progress.model_validate_json(path.read_bytes()) if path.is_file() else None

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the run directory for one `bertabl run`; a second one refuses instead of racing.

        An flock is released by the kernel when its holder dies, even by SIGKILL, so a killed run
        never leaves a stale lock behind.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        handle = open(self.root / ".lock", "a+")  # noqa: SIM115 - held for the context's life
        try:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.seek(0)
                holder = handle.read().strip() or "another process"
                raise UserError(
                    f"{self.root} is in use by another bertabl run ({holder}); wait for it to "
                    "finish, or use another --run-dir"
                ) from None
            handle.seek(0)
            handle.truncate()
            handle.write(f"pid {os.getpid()}")
            handle.flush()
            yield
        finally:
            handle.close()

    def is_locked(self) -> bool:
        """True while a `bertabl run` holds this run directory."""
        path = self.root / ".lock"
        if not path.is_file():
            return False
        with open(path) as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(handle, fcntl.LOCK_UN)
            return False

    @property
    def plan_file(self) -> Path:
        return self.root / PLAN

    def write_plan(self, plan: Plan) -> None:
        """Keep the plan this run directory runs (matrix/stored_plan.py)."""
        from bertabl.matrix.stored_plan import plan_to_json

        atomic_write_json(self.plan_file, {"written_at": time.time(), **plan_to_json(plan)})

    def plan(self) -> Plan | None:
        """The plan the last `bertabl run` here ran; None in a run directory made before
        bertabl kept one."""
        from bertabl.matrix.stored_plan import read_plan

        return read_plan(self.plan_file) if self.plan_file.is_file() else None

    def archive_path(self) -> Path:
        """Where `archive_plan` moves the kept plan: `plans/<when it was written>.json`."""
        written = json.loads(self.plan_file.read_text())["written_at"]
        stamp = time.strftime("%Y-%m-%dT%H-%M-%SZ", time.gmtime(written))
        return self.root / PLANS / f"{stamp}.json"

    def archive_plan(self) -> Path:
        """Move the kept plan to `plans/` (a run replaces it with a plan that lacks some of its
        finished trials: their report stays one command away)."""
        target = self.archive_path()
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(self.plan_file, target)
        return target

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
