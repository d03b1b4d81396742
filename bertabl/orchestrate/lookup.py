"""Finding runs and trials on disk: the run directories under a folder, the plan a run ran
(kept in the run directory), the run that plans a trial id, and how many trials of a run stand
where."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from bertabl.errors import UserError
from bertabl.matrix import Matrix, Plan, build_plan, load_matrix
from bertabl.orchestrate.plan_change import plan_notes
from bertabl.orchestrate.status import TrialStatus
from bertabl.orchestrate.store import PLANS, RunStore

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
    """The plan a run directory ran, as it keeps it (no input file is read). One made before
    bertabl kept plans: its matrix expanded again (reading and hashing the inputs)."""
    manifest = store.manifest()  # the standard "not a run directory" error
    return store.plan() or build_plan(Matrix.model_validate(manifest["matrix"]), str(store.root))


def plan_and_notes(store: RunStore, note: Callable[[str], None]) -> Plan:
    """The plan a run directory ran, each note about it (plan_change.plan_notes) handed to
    `note`."""
    plan = plan_of_run(store)
    for line in plan_notes(store, plan):
        note(line)
    return plan


def report_target(
    target: Path,
    overrides: list[str] | None,
    scale: str | None,
    run_dir: Path | None,
    out: Path | None,
    note: Callable[[str], None],
) -> tuple[Plan, RunStore, Path]:
    """(plan, store, output folder) of what `bertabl report` was given: a run directory (its
    plan), an earlier plan it keeps (written beside it, into <plan>/), or a matrix file."""
    if target.suffix == ".json" and target.is_file():
        store, plan = kept_plan(target)
        return plan, store, out or target.with_suffix("")
    if target.is_dir():
        store = RunStore(target)
        plan = plan_and_notes(store, note)
    else:
        plan, store = plan_for_matrix(target, overrides or [], scale, run_dir)
        for line in plan_notes(store, plan):
            note(line)
    return plan, store, out or store.root


def plan_for_matrix(
    matrix_file: Path, overrides: list[str], scale: str | None, run_dir: Path | None
) -> tuple[Plan, RunStore]:
    """(plan, store) of the run of a matrix file: the plan the run directory keeps when it ran
    this very matrix (nothing else is read), else the matrix expanded now."""
    matrix, source = load_matrix(matrix_file, overrides, scale)
    store = RunStore(run_dir or Path("runs") / matrix.name)
    store.manifest()  # a clear error when this matrix has not been run
    kept = store.plan()
    if kept is not None and kept.matrix == matrix:
        return kept, store
    return build_plan(matrix, source.path), store


def kept_plan(path: Path) -> tuple[RunStore, Plan]:
    """(store, plan) of an earlier plan a run directory keeps (<run dir>/plans/<time>.json)."""
    from bertabl.matrix.stored_plan import read_plan

    path = Path(path)
    if not path.is_file() or path.parent.name != PLANS:
        raise UserError(
            f"{path}: not a plan a run directory keeps (<run dir>/{PLANS}/<time>.json); pass a "
            "run directory, the matrix file, or one of those plans"
        )
    store = RunStore(path.parent.parent)
    store.manifest()  # the standard "not a run directory" error
    return store, read_plan(path)


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
