"""Names of what a trial leaves in its directory, shared by the trial bodies and the run store."""

from __future__ import annotations

FINAL_WEIGHTS = "final"  # a fine-tuning trial's kept final weights (finetune/kept.py)
PREDICTIONS = "predictions"  # a fine-tuning trial's predictions: <split>.jsonl


def model_dir_name(step: int | None = None) -> str:
    """Folder of the pre-trained model: the final one (None), or the one saved after `step`
    optimizer steps (Figure 5's x-axis)."""
    return "model" if step is None else f"model-step-{step:09d}"
