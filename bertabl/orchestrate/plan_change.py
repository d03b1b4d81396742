"""A run directory's plan against what came after it: the input files changed on disk (told
from size and modification time, nothing hashed), or a new plan that lacks finished trials of
the kept one (a run of a changed matrix, or of the same matrix on changed data, whose trials
then have new ids). A run keeps the earlier plan in `plans/`, so its results stay reportable;
`resume`, which runs the kept plan again, refuses inputs that are gone or changed.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from bertabl.data.fingerprints import Fingerprint, changed_content, changed_on_disk
from bertabl.errors import UserError
from bertabl.matrix.plan import Plan
from bertabl.orchestrate.store import RunStore


@dataclass(frozen=True)
class Superseded:
    """What a run of a new plan replaces in a run directory."""

    changed_inputs: list[str]  # `path (size a -> b bytes)` of each input whose content changed
    finished: int  # finished trials of the kept plan that the new plan does not hold
    kept_as: Path  # where the kept plan goes, so that its results stay reportable

    def message(self, root: Path) -> str:
        kept = (
            f"the earlier plan's {self.finished} finished trial(s) that are not in the new one "
            f"keep their results: `bertabl report {self.kept_as}` reports them"
        )
        if self.changed_inputs:
            return (
                f"inputs changed since {root} last ran: {'; '.join(self.changed_inputs)}. The "
                f"trials that read them are new trials, with new ids; {kept}"
            )
        return f"the plan changed since {root} last ran (its matrix, or inputs elsewhere); {kept}"


def trial_ids(plan: Plan) -> list[str]:
    """Every trial a run of `plan` runs (a multi-task trial's views are written by it)."""
    return [t.id for t in (*plan.pretrain, *plan.finetune, *plan.tests)]


def superseded(store: RunStore, plan: Plan) -> Superseded | None:
    """What running `plan` in `store` replaces; None when the kept plan (if any) holds no
    finished trial that `plan` lacks."""
    kept = store.plan()
    if kept is None:
        return None
    new = set(trial_ids(plan))
    records = store.records()
    gone = [i for i in trial_ids(kept) if i not in new and i in records and records[i].done]
    if not gone:
        return None
    changed = changed_content(kept.inputs, plan.inputs)
    return Superseded(changed, len(gone), store.archive_path())


def keep_plan(store: RunStore, plan: Plan) -> Path | None:
    """Store `plan` as the run directory's plan, first moving the kept one to `plans/` when
    `plan` lacks finished trials of it; returns where it went (None: not moved)."""
    moved = store.archive_plan() if superseded(store, plan) else None
    store.write_plan(plan)
    return moved


def plan_notes(store: RunStore, plan: Plan) -> list[str]:
    """What `status` and `report` say about the plan they show, beside it: that it had to be
    expanded again (a run directory of an earlier bertabl), or that inputs changed since."""
    if not store.plan_file.is_file():
        return [
            f"{store.root} keeps no plan.json (a run of an earlier bertabl): its plan was "
            "expanded again from its matrix and input files; the next `bertabl run` keeps it"
        ]
    changed = changed_on_disk(plan.inputs)
    if not changed:
        return []
    matrix = store.manifest()["source"]["path"]
    return [
        f"inputs changed since {store.root} ran (size or modification time differ): "
        f"{', '.join(f.path for f in changed)}. Shown: what the run ran, on the data it read; "
        f"`bertabl run {matrix}` runs the trials that read the new data, under new ids"
    ]


def check_resumable(store: RunStore, plan: Plan, only: set[str] | None) -> None:
    """A UserError when trials of the kept plan are still to run but its inputs are gone or
    changed: they would train on other data than their ids say."""
    to_run = [i for i in trial_ids(plan) if (only is None or i in only)]
    if all(store.is_done(i) for i in to_run):
        return
    gone = [f.path for f in plan.inputs if f.differs_on_disk() is None]
    changed = [f.path for f in plan.inputs if f.differs_on_disk() and _content_differs(f)]
    if not gone and not changed:
        return
    matrix = store.manifest()["source"]["path"]
    what = "; ".join(
        part
        for part in (
            gone and f"gone: {', '.join(gone)}",
            changed and f"changed: {', '.join(changed)}",
        )
        if part
    )
    raise UserError(
        f"{store.root}: the plan's input files are not as it was made ({what}); resuming would "
        f"train its trials on other data than their ids say. Put the files back, or run the "
        f"matrix again (`bertabl run {matrix}`): trials on changed data get new ids, and "
        "finished ones stay"
    )


def _content_differs(fingerprint: Fingerprint) -> bool:
    """Hash the file again (its size or modification time differ; only its bytes decide)."""
    path = Path(fingerprint.path)
    if path.stat().st_size != fingerprint.size:
        return True
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest() != fingerprint.sha256
