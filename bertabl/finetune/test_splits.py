"""Test splits: a finished fine-tune's kept model scored on the task's labeled test split (and
predicted on GLUE's unlabeled test sets) after selection, never during training, so no test
score can influence which grid point or restart is chosen."""

from __future__ import annotations

from pathlib import Path

import torch

from bertabl.finetune.epoch_loop import prepare, write_predictions
from bertabl.finetune.families.base import Scored
from bertabl.finetune.kept import load_final
from bertabl.training import Precision, TrialRuntime
from bertabl.trial.files import PREDICTIONS
from bertabl.trial.finetune import FinetuneTrialConfig


@torch.no_grad()
def score_kept(
    config: FinetuneTrialConfig,
    pretrained_dir: Path,
    trial_dir: Path,
    splits: list[str],
    runtime: TrialRuntime,
) -> dict[str, Scored]:
    """Each of `splits` scored with the trial's kept final weights; the predictions files are
    written beside its dev ones (trial_dir/predictions/<split>.jsonl)."""
    data, model = prepare(config, pretrained_dir, runtime, splits=tuple(splits))
    load_final(model, trial_dir)
    model.to(runtime.device)
    precision = Precision.for_device(runtime.device, runtime.precision)
    scored = {split: data.evaluate(model, split, precision) for split in splits}
    write_predictions(Path(trial_dir) / PREDICTIONS, scored)
    return scored
