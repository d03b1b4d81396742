"""What a trial leaves in its directory: the names the bodies and the run store share."""

from __future__ import annotations

from bertabl.trial.files import FINAL_WEIGHTS, PREDICTIONS, model_dir_name


def test_the_final_model_and_intermediate_ones_sort_by_step():
    assert model_dir_name() == model_dir_name(None) == "model"
    assert model_dir_name(300) == "model-step-000000300"
    assert model_dir_name(1_000_000) == "model-step-001000000"  # the paper's 1M steps
    steps = [1_000_000, 300, 20_000]
    assert sorted(model_dir_name(s) for s in steps) == [model_dir_name(s) for s in sorted(steps)]
    assert (FINAL_WEIGHTS, PREDICTIONS) == ("final", "predictions")
