"""Cross-references are checked once, when the matrix validates: before any trial runs, and
with no state shared between matrices."""

from __future__ import annotations

import pytest

from bertabl.errors import MatrixError
from bertabl.matrix.load import load_matrix, tomllib, validate
from tests.conftest import FIXTURES, REPO, TINY_MATRIX


def _raw(**finetune) -> dict:
    raw = tomllib.loads(TINY_MATRIX)
    raw["finetune"] |= finetune
    return raw


def test_paper_rows_that_name_a_dropped_variant_fail_before_anything_trains():
    # Table 7 keeping two of its rows: report.paper_rows still maps the others. This used to
    # train both rows and fail at the report step.
    overrides = [
        'pretrain.variants=[{name="fine_tuning"}, '
        '{name="embeddings", finetune={head="features", features="embeddings"}}]',
        'report.paper_rows={"fine_tuning"="bert_base", "sum_last_four"="weighted_sum_last_four"}',
    ]
    with pytest.raises(MatrixError, match=r"report\.paper_rows\.sum_last_four: no variant"):
        load_matrix(REPO / "matrices" / "table7.toml", overrides)


def test_a_custom_task_is_known_only_to_the_matrix_that_defines_it():
    defining = _raw(tasks=["reviews"])
    folder = FIXTURES / "custom"
    defining["data"]["custom_tasks"] = {
        "reviews": {
            "format": "csv",
            "train": str(folder / "reviews_train.csv"),
            "dev": str(folder / "reviews_dev.csv"),
            "text": "review",
            "label": "stars",
            "labels": ["neg", "mid", "pos"],
        }
    }
    assert "reviews" in validate(defining, "a.toml").catalogue
    with pytest.raises(MatrixError, match=r"finetune\.tasks\[0\]: unknown task 'reviews'"):
        validate(_raw(tasks=["reviews"]), "b.toml")


@pytest.mark.parametrize(
    ("finetune", "message"),
    [
        (
            {"task_settings": {"sst2": {"recipe": {"layer_decay": 0.9}}}},
            r"finetune\.task_settings\.sst2: task_settings names task 'sst2'",
        ),
        (
            {"task_settings": {"syn_agree": {"doc_stride": 64}}},
            r"task_settings\.syn_agree\.doc_stride: only span QA",
        ),
        (
            {"selection_metric": {"syn_agree": "f1"}},
            r"finetune\.selection_metric\.syn_agree: .*allowed: accuracy",
        ),
        (
            {"multitask": [{"name": "g", "tasks": ["syn_agree", "nope"]}]},
            r"finetune\.multitask\[0\]\.tasks: unknown task 'nope'",
        ),
    ],
)
def test_each_broken_reference_names_its_key(finetune, message):
    with pytest.raises(MatrixError, match=message):
        validate(_raw(**finetune), "m.toml")
