"""Live progress of a run: a rich table in the terminal, fed by RunObserver events.

On a terminal: data preparation's bar, the per-stage table, and one bar per running trial
(steps or epochs done of its total, with an ETA). Elsewhere (CI logs, pipes: rich's Live draws
nothing there until the end) the same news as short plain lines, at most one per running trial
every PLAIN_TRIAL_EVERY_S, so a long run's log stays short.
"""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console, Group
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from bertabl.matrix.cells import trial_words
from bertabl.matrix.plan import Plan
from bertabl.orchestrate.observer import RunObserver
from bertabl.orchestrate.status import metric_line
from bertabl.trial.finetune import TestTrialConfig
from bertabl.trial.pretrain import PretrainTrialConfig

STAGES = ("pretrain", "finetune", "test")
_PREFIX = {"pt": "pretrain", "ft": "finetune", "te": "test"}
PLAIN_EVERY_S = 10.0  # without a terminal, a line of preparation progress at most this often
PLAIN_TRIAL_EVERY_S = 60.0  # ... and a line per running trial at most this often


class LiveProgress(RunObserver):
    """Counts per stage, the running trials' latest metric, and a log line per finished trial."""

    def __init__(self, plan: Plan, console: Console):
        self.plan = plan
        self.console = console
        self.words = trial_words(plan)  # each trial in words: its rows, task, grid point
        self.total = {
            "pretrain": len(plan.pretrain),
            "finetune": len(plan.finetune),
            "test": len(plan.tests),
        }
        self.counts = {
            s: dict.fromkeys(("skipped", "done", "failed", "blocked"), 0) for s in STAGES
        }
        self.running: dict[str, str] = {}
        self.bar: Progress | None = None  # data preparation's, on a terminal
        self.stage: tuple[str, float | None, str, float] | None = None  # what, total, unit, t0
        self.printed_at = 0.0
        # Per-trial bars on a terminal (rich computes each one's ETA from its recent speed).
        self.trial_bars: Progress | None = None
        if console.is_terminal:
            self.trial_bars = Progress(
                TextColumn("  {task.description}"),
                BarColumn(bar_width=24),
                TextColumn("{task.fields[position]}"),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                TextColumn("{task.fields[metric]}", style="dim"),
                console=console,
                auto_refresh=False,  # the run's Live display redraws it
            )
        self.bar_of: dict[str, Any] = {}  # trial id -> its bar's task id
        # trial id -> (first reported time, position): where its ETA counts from; without a
        # terminal also when its last plain line was printed.
        self.first_seen: dict[str, tuple[float, int]] = {}
        self.line_at: dict[str, float] = {}

    def _stage(self, trial_id: str) -> str:
        return _PREFIX[trial_id[:2]]

    def _describe(self, trial_id: str) -> str:
        return f"{trial_id} {self.words[trial_id]}"

    # -- data preparation: a bar with an ETA on a terminal, plain lines elsewhere -------------

    def preparing(self, what: str, total: float | None, unit: str) -> None:
        self.console.print(f"[bold]data[/]: {what}", soft_wrap=True)
        self.stage = (what, total, unit, time.monotonic())
        self.printed_at = time.monotonic()
        self.bar = None
        if self.console.is_terminal:
            self.bar = Progress(
                TextColumn("  {task.description}"),
                BarColumn(),
                TaskProgressColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                console=self.console,
                auto_refresh=False,  # the run's Live display redraws it
            )
            self.bar.add_task(_amount(0, unit, total), total=total)

    def prepare_progress(self, done: float) -> None:
        if self.stage is None:
            return
        what, total, unit, started = self.stage
        if self.bar is not None:
            task = self.bar.task_ids[0]
            self.bar.update(task, completed=done, description=_amount(done, unit, total))
            return
        now = time.monotonic()
        if now - self.printed_at < PLAIN_EVERY_S:
            return
        self.printed_at = now
        line = f"  {what}: {_amount(done, unit, total)}"
        if total and done > 0:
            eta = (now - started) * (total - done) / done
            line += f" ({done / total:.0%}, ETA {eta:.0f} s)"
        self.console.print(line, highlight=False, soft_wrap=True)

    def prepared(self, summary: str, seconds: float) -> None:
        self.bar, self.stage = None, None
        self.console.print(f"[green]prepared[/] {summary}", soft_wrap=True)

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
        total = position_of(self.plan.trial(trial_id).config, {})[1]
        if self.trial_bars is not None and trial_id not in self.bar_of:
            self.bar_of[trial_id] = self.trial_bars.add_task(
                self._describe(trial_id),
                total=total,
                start=False,  # the clock starts at its first report (after loading, setup)
                position="starting",
                metric="",
            )
        self.line_at[trial_id] = time.monotonic()  # a plain line only after a while

    def trial_result(self, trial_id: str, metrics: dict[str, Any]) -> None:
        config = self.plan.trial(trial_id).config
        line = metric_line(config, metrics)
        self.running[trial_id] = line
        done, total, unit = position_of(config, metrics)
        now = time.monotonic()
        if trial_id in self.bar_of:
            task = self.bar_of[trial_id]
            shown = f"{done}/{total} {unit}" if total else ""
            metric = line.split("  ", 1)[1] if "  " in line else ""
            if trial_id not in self.first_seen:
                # A resumed trial starts part-way: its speed counts from here, not from 0.
                self.first_seen[trial_id] = (now, done)
                self.trial_bars.reset(task, completed=done, position=shown, metric=metric)
            else:
                self.trial_bars.update(task, completed=done, position=shown, metric=metric)
            return
        first = self.first_seen.setdefault(trial_id, (now, done))
        if now - self.line_at.get(trial_id, 0.0) < PLAIN_TRIAL_EVERY_S:
            return
        self.line_at[trial_id] = now
        eta = ""
        if total and done > first[1]:
            seconds = (now - first[0]) * (total - done) / (done - first[1])
            eta = f" ({done / total:.0%}, ETA {seconds:.0f} s)"
        self.console.print(f"  {trial_id} {line}{eta}", highlight=False, soft_wrap=True)

    def _forget(self, trial_id: str) -> None:
        task = self.bar_of.pop(trial_id, None)
        if task is not None:
            self.trial_bars.remove_task(task)
        self.first_seen.pop(trial_id, None)
        self.line_at.pop(trial_id, None)

    def trial_done(self, trial_id: str) -> None:
        self._forget(trial_id)
        last = self.running.pop(trial_id, "")
        self.counts[self._stage(trial_id)]["done"] += 1
        self.console.print(f"[green]done[/] {self._describe(trial_id)}  {last}")

    def trial_failed(self, trial_id: str, reason: str) -> None:
        self._forget(trial_id)
        self.running.pop(trial_id, None)
        self.counts[self._stage(trial_id)]["failed"] += 1
        self.console.print(f"[red]failed[/] {self._describe(trial_id)}: {reason}")

    def interrupted(self, signal_name: str, trial_ids: list[str]) -> None:
        running = [t for t in trial_ids if t in self.running]
        for trial_id in running:
            self._forget(trial_id)
            last = self.running.pop(trial_id, "")
            self.console.print(f"[yellow]stopped[/] {self._describe(trial_id)}  {last}")
        self.console.print(
            f"[yellow]{signal_name}[/]: stopped {len(running)} running trial(s); "
            f"{len(trial_ids)} unfinished continue on `bertabl resume` (from their checkpoints)",
            soft_wrap=True,
        )

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
        shown: list = [self.bar] if self.bar is not None else []
        shown.append(table)
        if self.bar_of:  # each running trial's bar, its latest metric beside it
            shown.append(self.trial_bars)
        unbarred = sorted((t, m) for t, m in self.running.items() if t not in self.bar_of)
        return Group(*shown, *(Text(f"  {t}  {m}", style="dim") for t, m in unbarred))


def position_of(config, metrics: dict[str, Any]) -> tuple[int, int | None, str]:
    """(done, total, unit) of a trial: pre-training's optimizer steps, fine-tuning's epochs;
    a test-split scoring has no total."""
    if isinstance(config, TestTrialConfig):
        return 0, None, ""
    if isinstance(config, PretrainTrialConfig):
        return int(metrics.get("step", 0)), config.pretrain.steps, "steps"
    return int(metrics.get("epoch", 0)), config.epochs, "epochs"


def _amount(done: float, unit: str, total: float | None) -> str:
    if unit == "bytes":
        of = f" of {total / 1e6:,.1f}" if total else ""
        return f"{done / 1e6:,.1f}{of} MB"
    of = f" of {total:,.0f}" if total else ""
    return f"{done:,.0f}{of} {unit}"
