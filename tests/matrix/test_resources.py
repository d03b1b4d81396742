"""Resources per stage over the flat keys: what each stage's trials get, and the GPU counts Ray
cannot grant, as one line naming the key."""

from __future__ import annotations

import pytest

from bertabl.errors import MatrixError
from bertabl.matrix import build_plan
from bertabl.matrix.load import tomllib, validate
from bertabl.matrix.schema import Resources
from tests.conftest import TINY_MATRIX


def _matrix(resources: dict):
    raw = tomllib.loads(TINY_MATRIX)
    raw["resources"] = resources
    return validate(raw, "m.toml")


def test_flat_keys_are_the_defaults_of_both_stages():
    resources = Resources(cpus_per_trial=2, gpus_per_trial=1, workers_per_trial=2)
    pretrain, finetune = resources.stage("pretrain"), resources.stage("finetune")
    assert (pretrain.workers, pretrain.cpus_per_worker, pretrain.gpus_per_worker) == (2, 2, 1)
    # fine-tuning never took workers_per_trial: one worker unless [resources.finetune] says so
    assert (finetune.workers, finetune.cpus_per_worker, finetune.gpus_per_worker) == (1, 2, 1)
    assert pretrain.placement == finetune.placement == "pack"
    assert pretrain.keys["workers"] == "resources.workers_per_trial"


def test_a_stage_section_overrides_the_flat_keys():
    resources = Resources(
        gpus_per_trial=0.25,
        micro_batch_size=4,
        pretrain={"workers": 4, "gpus_per_worker": 1, "placement": "spread"},
        finetune={"cpus_per_worker": 0.5},
    )
    pretrain = resources.stage("pretrain")
    assert pretrain.params() == {
        "workers": 4,
        "cpus_per_worker": 1.0,
        "gpus_per_worker": 1.0,
        "placement": "spread",
        "micro_batch_size": 4,
    }
    assert pretrain.keys["gpus_per_worker"] == "resources.pretrain.gpus_per_worker"
    finetune = resources.stage("finetune")
    assert (finetune.gpus_per_worker, finetune.cpus_per_worker) == (0.25, 0.5)


@pytest.mark.parametrize(
    ("resources", "line"),
    [
        (
            {"gpus_per_trial": 0.75, "workers_per_trial": 2},
            "m.toml: resources.gpus_per_trial = 0.75 with resources.workers_per_trial = 2: a "
            "fraction of a GPU is for single-worker trials only (each data-parallel worker needs "
            "whole GPUs of its own); set resources.pretrain.gpus_per_worker = 1, or "
            "resources.workers_per_trial = 1",
        ),
        (
            {"finetune": {"workers": 2, "gpus_per_worker": 0.5}},
            "m.toml: resources.finetune.gpus_per_worker = 0.5 with resources.finetune.workers = "
            "2: a fraction of a GPU is for single-worker trials only (each data-parallel worker "
            "needs whole GPUs of its own); set resources.finetune.gpus_per_worker = 1, or "
            "resources.finetune.workers = 1",
        ),
        (
            {"pretrain": {"gpus_per_worker": 1.5}},
            "m.toml: resources.pretrain.gpus_per_worker = 1.5: Ray grants a fraction of one GPU, "
            "or whole GPUs; use 1 or 2",
        ),
        (
            {"pretrain": {"placement": "scatter"}},
            "m.toml: resources.pretrain.placement: Input should be 'pack' or 'spread' "
            "(got 'scatter')",
        ),
    ],
)
def test_gpu_counts_ray_cannot_grant_are_one_line_naming_the_key(resources, line):
    with pytest.raises(MatrixError) as caught:
        _matrix(resources)
    assert str(caught.value) == line


def test_fractions_share_a_gpu_in_single_worker_trials():
    matrix = _matrix({"gpus_per_trial": 0.25, "pretrain": {"workers": 2, "gpus_per_worker": 1}})
    assert matrix.resources.stage("finetune").gpus_per_worker == 0.25


def test_resources_are_not_part_of_trial_ids():
    plain = build_plan(_matrix({}))
    spread = build_plan(
        _matrix(
            {
                "workers_per_trial": 2,
                "pretrain": {"cpus_per_worker": 2, "placement": "spread"},
                "finetune": {"workers": 2},
            }
        )
    )
    assert [t.id for t in plain.pretrain] == [t.id for t in spread.pretrain]
    assert [t.id for t in plain.finetune] == [t.id for t in spread.finetune]


def test_a_batch_that_cannot_split_names_the_stage_key():
    with pytest.raises(MatrixError, match=r"over resources\.pretrain\.workers = 3"):
        build_plan(_matrix({"pretrain": {"workers": 3}}))
    with pytest.raises(MatrixError, match=r"resources\.pretrain\.micro_batch_size = 3 must divide"):
        build_plan(_matrix({"pretrain": {"workers": 2, "micro_batch_size": 3}}))
