"""Finding runs and trials on disk: the run directories under a folder, the plan a run was
made from, the run that plans a trial id, and how many trials of a run stand where."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

from bertabl.errors import UserError
from bertabl.matrix import Matrix, Plan, build_plan
from bertabl.orchestrate.status import TrialStatus
from bertabl.orchestrate.store import RunStore

TRIAL_ID = re.compile(r"(pt|ft)-[0-9a-f]{8}")


def run_dirs(folder: Path) -> list[Path]:
    """`folder` itself when it is a run directory, else the run directories directly in it."""
    if (folder / "matrix.json").is_file():
        return [folder]
    return sorted(p.parent for p in folder.glob("*/matrix.json"))


def newest_run(folder: Path) -> tuple[Path, list[Path]]:
    """(the run directory under `folder` written last, the others newest first)."""
    runs = sorted(run_dirs(folder), key=lambda p: (p / "matrix.json").stat().st_mtime)
    if not runs:
        raise UserError(
            f"{folder}: no runs here; run a matrix first (bertabl run matrices/demo.toml), or "
            "name a run directory or matrix"
        )
    return runs[-1], runs[-2::-1]


def plan_of_run(store: RunStore) -> Plan:
    """The plan of the matrix a run directory was made from (as resolved then)."""
    return build_plan(Matrix.model_validate(store.manifest()["matrix"]), str(store.root))


def find_trial_run(trial_id: str, run_dir: Path | None) -> tuple[RunStore, Plan]:
    """(store, plan) of the run that plans `trial_id`: `run_dir`, or the one under runs/."""
    if not TRIAL_ID.fullmatch(trial_id):
        raise UserError(
            f"{trial_id}: neither a run directory nor a trial id (pt-xxxxxxxx / ft-xxxxxxxx)"
        )
    found = []
    for candidate in [run_dir] if run_dir else run_dirs(Path("runs")):
        store = RunStore(candidate)
        plan = plan_of_run(store)
        if any(t.id == trial_id for t in [*plan.pretrain, *plan.finetune]):
            found.append((store, plan))
    if not found:
        where = run_dir or "runs/*"
        raise UserError(f"trial {trial_id} is not planned in {where}; pass its run with --run-dir")
    if len(found) > 1:
        dirs = ", ".join(str(store.root) for store, _ in found)
        raise UserError(f"trial {trial_id} is in several runs ({dirs}); choose one with --run-dir")
    return found[0]


def state_counts(statuses: list[TrialStatus]) -> str:
    """`3 done, 1 failed, 2 pending`: how many trials are in each state, states sorted."""
    counts = Counter(st.state for st in statuses)
    return ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))
