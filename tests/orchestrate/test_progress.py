"""The live progress table: counts per stage as events arrive, running trials' latest metric."""

from __future__ import annotations

from rich.console import Console

from bertabl.matrix import build_plan
from bertabl.matrix.load import tomllib, validate
from bertabl.orchestrate.progress import LiveProgress
from tests.conftest import TINY_MATRIX


def _rows(text: str) -> dict[str, list[str]]:
    return {line.split()[0]: line.split()[1:] for line in text.splitlines() if line.strip()}


def test_counts_follow_the_events():
    plan = build_plan(validate(tomllib.loads(TINY_MATRIX), "m.toml"))
    console = Console(record=True, width=120, color_system=None)
    progress = LiveProgress(plan, console)
    first, second = plan.pretrain
    progress.skipped([first.id])
    progress.trial_started(second.id)
    progress.trial_result(second.id, {"step": 5, "loss": 3.0})
    ft = [t for t in plan.finetune if t.pretrain_id == second.id]
    progress.blocked(plan.finetune[0].id, "pre-training failed")
    progress.trial_started(ft[1].id)
    progress.trial_failed(ft[1].id, "loss became nan")

    console.print(progress)
    text = console.export_text()
    assert "pre-training failed" in text and "loss became nan" in text  # one line each
    table = _rows(text)
    # columns: total, skipped, pending, running, done, failed, blocked
    assert table["pretrain"] == ["2", "1", "0", "1", "0", "0", "0"]
    total = str(len(plan.finetune))
    assert table["finetune"] == [total, "0", str(len(plan.finetune) - 2), "0", "0", "1", "1"]
    assert table[second.id] == ["step", "5/10", "loss", "3.000"]  # the running trial's line

    progress.trial_done(second.id)
    console.print(progress)
    text = console.export_text()
    assert f"done {second.id} {plan.describe(second.id)}  step 5/10" in text
    assert _rows(text)["pretrain"] == ["2", "1", "0", "0", "1", "0", "0"]


def test_data_preparation_shows_a_bar_on_a_terminal_and_lines_elsewhere(monkeypatch):
    from bertabl.orchestrate import progress as progress_module

    plan = build_plan(validate(tomllib.loads(TINY_MATRIX), "m.toml"))
    terminal = Console(record=True, width=120, color_system=None, force_terminal=True)
    live = LiveProgress(plan, terminal)
    live.preparing("tokenising corpus.txt", 4e6, "bytes")
    live.prepare_progress(1e6)
    terminal.print(live)
    text = terminal.export_text()
    assert "tokenising corpus.txt" in text and "1.0 of 4.0 MB" in text and "ETA" in text
    live.prepared("corpus.txt: 900 tokens in 2 documents", 1.0)
    terminal.print(live)
    assert "prepared corpus.txt" in terminal.export_text()

    monkeypatch.setattr(progress_module, "PLAIN_EVERY_S", 0.0)
    plain = Console(record=True, width=120, color_system=None)  # not a terminal: a log
    live = LiveProgress(plan, plain)
    live.preparing("tokenising corpus.txt", 4e6, "bytes")
    live.prepare_progress(2e6)
    text = plain.export_text()
    assert "tokenising corpus.txt: 2.0 of 4.0 MB (50%, ETA" in text
    assert live.bar is None


def test_running_trials_get_a_bar_on_a_terminal():
    plan = build_plan(validate(tomllib.loads(TINY_MATRIX), "m.toml"))
    console = Console(record=True, width=160, color_system=None, force_terminal=True)
    live = LiveProgress(plan, console)
    pt = plan.pretrain[0]
    ft = plan.finetune[0]
    live.trial_started(pt.id)
    live.trial_started(ft.id)
    live.trial_result(pt.id, {"step": 2, "loss": 4.0})
    live.trial_result(pt.id, {"step": 5, "loss": 3.0})
    live.trial_result(ft.id, {"epoch": 1, "dev_accuracy": 0.75})
    console.print(live)
    text = console.export_text()
    [pt_line] = [line for line in text.splitlines() if f"{pt.id} " in line]
    assert plan.describe(pt.id) in pt_line  # its rows
    assert "5/10 steps" in pt_line and "ETA" in pt_line and "loss 3.000" in pt_line
    epochs = dict(ft.grid_point)["epochs"]
    [ft_line] = [line for line in text.splitlines() if f"{ft.id} " in line]
    assert f"bert_base: {plan.describe(ft.id)}" in ft_line  # its row, task, grid point
    assert f"1/{epochs} epochs" in ft_line and "dev_accuracy 0.750" in ft_line
    assert live.trial_bars.tasks[0].completed == 5 and live.trial_bars.tasks[0].total == 10

    live.trial_done(pt.id)
    live.trial_failed(ft.id, "loss became nan")
    assert live.trial_bars.tasks == [] and live.bar_of == {}
    console.print(live)
    assert "5/10 steps" not in console.export_text()  # finished trials leave the bars


def test_without_a_terminal_running_trials_log_short_rate_limited_lines(monkeypatch):
    from bertabl.orchestrate import progress as progress_module

    clock = [100.0]
    monkeypatch.setattr(progress_module.time, "monotonic", lambda: clock[0])
    plan = build_plan(validate(tomllib.loads(TINY_MATRIX), "m.toml"))
    console = Console(record=True, width=160, color_system=None)
    live = LiveProgress(plan, console)
    assert live.trial_bars is None
    pt = plan.pretrain[0]
    live.trial_started(pt.id)
    live.trial_result(pt.id, {"step": 2, "loss": 4.0})  # at 100 s: the ETA counts from here
    clock[0] += progress_module.PLAIN_TRIAL_EVERY_S / 2
    live.trial_result(pt.id, {"step": 4, "loss": 3.5})  # too soon after the start: no line
    assert console.export_text(clear=False) == ""
    clock[0] += progress_module.PLAIN_TRIAL_EVERY_S  # 1.5 periods after the first report
    live.trial_result(pt.id, {"step": 5, "loss": 3.0})
    seconds = 1.5 * progress_module.PLAIN_TRIAL_EVERY_S * (10 - 5) / (5 - 2)
    assert console.export_text(clear=False).splitlines() == [
        f"  {pt.id} step 5/10  loss 3.000 (50%, ETA {seconds:.0f} s)"
    ]
    clock[0] += 1.0
    live.trial_result(pt.id, {"step": 6, "loss": 2.9})  # rate-limited: one line per period
    assert len(console.export_text(clear=False).splitlines()) == 1
