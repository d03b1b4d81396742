"""Live progress of a run: a rich table in the terminal, fed by RunObserver events."""

from __future__ import annotations

from typing import Any

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from bertabl.matrix.plan import Plan
from bertabl.orchestrate.observer import RunObserver
from bertabl.orchestrate.status import metric_line

STAGES = ("pretrain", "finetune", "test")
_PREFIX = {"pt": "pretrain", "ft": "finetune", "te": "test"}


class LiveProgress(RunObserver):
    """Counts per stage, the running trials' latest metric, and a log line per finished trial."""

    def __init__(self, plan: Plan, console: Console):
        self.plan = plan
        self.console = console
        self.total = {
            "pretrain": len(plan.pretrain),
            "finetune": len(plan.finetune),
            "test": len(plan.tests),
        }
        self.counts = {
            s: dict.fromkeys(("skipped", "done", "failed", "blocked"), 0) for s in STAGES
        }
        self.running: dict[str, str] = {}

    def _stage(self, trial_id: str) -> str:
        return _PREFIX[trial_id[:2]]

    def _describe(self, trial_id: str) -> str:
        return f"{trial_id} {self.plan.describe(trial_id)}"

    def skipped(self, trial_ids: list[str]) -> None:
        for trial_id in trial_ids:
            self.counts[self._stage(trial_id)]["skipped"] += 1

    def blocked(self, trial_id: str, reason: str) -> None:
        self.counts[self._stage(trial_id)]["blocked"] += 1
        self.console.print(f"[yellow]blocked[/] {self._describe(trial_id)}: {reason}")

    def stage_started(self, stage: str, trial_ids: list[str]) -> None:
        self.console.print(f"[bold]{stage}[/]: {len(trial_ids)} trial(s) to run")

    def trial_started(self, trial_id: str) -> None:
        self.running[trial_id] = "starting"

    def trial_result(self, trial_id: str, metrics: dict[str, Any]) -> None:
        self.running[trial_id] = metric_line(self.plan.trial(trial_id).config, metrics)

    def trial_done(self, trial_id: str) -> None:
        last = self.running.pop(trial_id, "")
        self.counts[self._stage(trial_id)]["done"] += 1
        self.console.print(f"[green]done[/] {self._describe(trial_id)}  {last}")

    def trial_failed(self, trial_id: str, reason: str) -> None:
        self.running.pop(trial_id, None)
        self.counts[self._stage(trial_id)]["failed"] += 1
        self.console.print(f"[red]failed[/] {self._describe(trial_id)}: {reason}")

    def __rich__(self) -> Group:
        table = Table(box=None, pad_edge=False)
        for column in ("stage", "total", "skipped", "pending", "running", "done", "failed"):
            table.add_column(column, justify="left" if column == "stage" else "right")
        table.add_column("blocked", justify="right")
        for stage in (s for s in STAGES if self.total[s]):
            c = self.counts[stage]
            running = sum(1 for t in self.running if self._stage(t) == stage)
            finished = c["skipped"] + c["done"] + c["failed"] + c["blocked"]
            pending = self.total[stage] - finished - running
            table.add_row(
                stage,
                *(str(n) for n in (self.total[stage], c["skipped"], pending, running)),
                str(c["done"]),
                str(c["failed"]),
                str(c["blocked"]),
            )
        lines = [Text(f"  {t}  {m}", style="dim") for t, m in sorted(self.running.items())]
        return Group(table, *lines)
