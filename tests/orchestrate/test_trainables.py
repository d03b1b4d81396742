"""The Tune trainables, called in-process (tune.report only warns outside a Tune session)."""

from __future__ import annotations

import platform
import threading
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import bertabl.pretrain.step_loop as train_module
from bertabl.matrix import build_plan
from bertabl.matrix.load import tomllib, validate
from bertabl.matrix.resources import TrialResources
from bertabl.orchestrate.params import RunSettings, TrialParams
from bertabl.orchestrate.store import RunStore
from bertabl.orchestrate.trainables import release_freed_memory, run_trial
from bertabl.trial.files import model_dir_name
from tests.conftest import TINY_MATRIX

pytestmark = pytest.mark.filterwarnings("ignore:`report` is meant to only be called")


def _params(run_dir: Path, trial, save_steps: list[int]) -> dict:
    settings = RunSettings(
        run_dir=str(run_dir),
        checkpoint_every=4,
        checkpoint_keep=2,
        precision="auto",
        deterministic=False,
        worker_restarts=1,
        train_storage=str(run_dir / "train"),
        save_steps={trial.id: save_steps},
    )
    resources = TrialResources("pretrain", workers=1, cpus_per_worker=1, gpus_per_worker=0,
                               placement="pack")  # fmt: skip
    return TrialParams(trial.id, "pretrain", trial.config, resources, settings).tune_config()


def _files(folder: Path) -> dict[str, tuple[bytes, int]]:
    """Every file's bytes and modification time: what 'untouched' means."""
    return {
        p.relative_to(folder).as_posix(): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _untouchable(folder: Path) -> dict:
    """What finished fine-tunes read: the final model, model-step-5 and the record."""
    files = {name: _files(folder / name) for name in ("model", model_dir_name(5))}
    record = folder / "record.json"
    return files | {"record": (record.read_text(), record.stat().st_mtime_ns)}


def test_a_finished_pretraining_rerun_saves_only_the_missing_intermediate_model(
    tmp_path: Path, monkeypatch
):
    """A later matrix asks a finished pre-training for the model after step 3: the re-run trains
    3 steps, saves model-step-3 in its own folder and touches nothing that finished fine-tunes
    read (the final model, model-step-5, the record)."""
    raw = tomllib.loads(TINY_MATRIX)
    trial = build_plan(validate(raw, "m.toml"), "m.toml").pretrain[0]
    store = RunStore(tmp_path / "run")
    run_trial(_params(store.root, trial, [5]))
    folder = store.trial_dir(trial.id)
    assert store.is_done(trial.id) and (folder / model_dir_name(5)).is_dir()
    before = _untouchable(folder)

    steps = []
    apply = train_module.apply_gradients
    monkeypatch.setattr(
        train_module, "apply_gradients", lambda *a, **k: steps.append(1) or apply(*a, **k)
    )
    run_trial(_params(store.root, trial, [3, 5]))
    assert len(steps) == 3  # up to the last missing step, not the trial's 10
    assert _untouchable(folder) == before
    assert not (folder / "checkpoints").exists() or not any((folder / "checkpoints").iterdir())

    # On CPU the saved model is the one the first run passed through at step 3.
    reference = tmp_path / "reference"
    monkeypatch.setattr(train_module, "apply_gradients", apply)
    from bertabl.pretrain.step_loop import pretrain
    from bertabl.training import TrialRuntime

    pretrain(trial.config, reference, TrialRuntime(torch.device("cpu"), save_steps=(3,)))
    saved = load_file(folder / model_dir_name(3) / "model.safetensors")
    expected = load_file(reference / model_dir_name(3) / "model.safetensors")
    assert saved.keys() == expected.keys()
    assert all(torch.equal(saved[k], expected[k]) for k in saved)


def _rss_mb() -> float:
    return int(Path("/proc/self/statm").read_text().split()[1]) * 4096 / 2**20


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")
def test_memory_a_trial_thread_freed_goes_back_to_the_system():
    """Tune runs each trial of a warm worker in a new thread; what that thread's malloc arena
    freed stays in the process (a recipes_cpu worker grew ~1 GB a trial) until trimmed."""
    kept = []

    def trial():  # ~380 MB in 64 KB blocks (under glibc's mmap threshold), every other one kept
        blocks = [torch.empty(16_000).fill_(1) for _ in range(6000)]
        kept.extend(blocks[::500])
        del blocks

    base = _rss_mb()
    thread = threading.Thread(target=trial)
    thread.start()
    thread.join()
    retained = _rss_mb() - base
    release_freed_memory()
    assert retained > 100  # the freed blocks stayed in the process
    assert _rss_mb() - base < retained / 2
