"""Every task family, head and pooling fine-tunes under bf16 autocast (resources.precision =
"bf16"), on CPU: the paths a GPU run takes, minus the device. Each case runs the trial body
twice, fp32 and bf16, from the same tiny pre-trained model: bf16 must really autocast (linear
layers give bf16), keep the LSTMs in fp32, and train to about the fp32 losses and scores."""

from __future__ import annotations

import math
from pathlib import Path
from typing import get_args

import pytest
import torch
from torch import nn

from bertabl.finetune.epoch_loop import finetune
from bertabl.finetune.multitask import finetune_multitask
from bertabl.matrix import build_plan
from bertabl.matrix.load import tomllib, validate
from bertabl.pretrain.step_loop import pretrain
from bertabl.training import TrialRuntime
from bertabl.trial.finetune import MultitaskTrialConfig
from tests.conftest import FIXTURES, TINY_MATRIX, fixture_copies

CPU = torch.device("cpu")


def _copied(tmp: Path, fixture: str, names: tuple[str, ...]) -> Path:
    return fixture_copies(tmp / names[0].split(".")[0], fixture, names)


def _squad(raw: dict, tmp: Path) -> None:
    folder = _copied(tmp, "squad/dev-v2.0-mini.json", ("train-v2.0.json", "dev-v2.0.json"))
    raw["data"]["squad_dir"] = str(folder)
    raw["finetune"] |= {"tasks": ["squad_v2"], "max_seq_len": 64}


def _swag(raw: dict, tmp: Path) -> None:
    raw["data"]["swag_dir"] = str(_copied(tmp, "swag/val.csv", ("train.csv", "val.csv")))
    raw["finetune"] |= {"tasks": ["swag"], "max_seq_len": 64}


def _conll(raw: dict, tmp: Path) -> None:
    raw["data"]["conll_dir"] = str(FIXTURES / "report" / "conll")
    raw["data"]["tokenizer"] = str(FIXTURES / "ner" / "vocab.txt")
    raw["finetune"] |= {"tasks": ["conll2003"], "max_seq_len": 64}


def _regression(raw: dict, tmp: Path) -> None:
    path = str(FIXTURES / "custom" / "similarity.jsonl")
    raw["data"]["custom_tasks"] = {
        "sim": {"format": "jsonl", "train": path, "dev": path, "text": "a", "text_pair": "b"}
        | {"label": "score", "regression": True}
    }
    raw["finetune"]["tasks"] = ["sim"]


def _tasks(*tasks: str):
    return lambda raw, tmp: raw["finetune"].update(tasks=list(tasks))


def _and(setup, **finetune):
    def both(raw, tmp):
        setup(raw, tmp)
        raw["finetune"] |= finetune

    return both


POOLINGS = ["cls", "mean", "attention", "cnn"]
# id -> (pre-training objective, matrix changes, the dev metric to check)
CASES = {
    "classification-cls_pooler": ("mlm_nsp", _tasks("syn_agree"), "dev_accuracy"),
    **{
        f"classification-{p}": (
            "mlm",
            _and(_tasks("syn_agree"), recipe={"pooling": p, "grad_accumulation": 2}),
            "dev_accuracy",
        )
        for p in POOLINGS
    },
    "classification-bilstm": ("mlm_nsp", _and(_tasks("syn_chain"), head="bilstm"), "dev_accuracy"),
    "classification-ltr": ("ltr", _tasks("syn_agree"), "dev_accuracy"),
    "classification-ltr-bilstm": ("ltr", _and(_tasks("syn_chain"), head="bilstm"), "dev_accuracy"),
    "regression-cls_pooler": ("mlm_nsp", _regression, "dev_pearson"),
    "regression-attention": ("mlm", _and(_regression, recipe={"pooling": "attention"}), None),
    "tagging-linear": ("mlm_nsp", _conll, "dev_f1"),
    "tagging-features": (
        "mlm_nsp",
        _and(_conll, head="features", features="weighted_sum_all"),
        "dev_f1",
    ),
    "span_qa-linear": ("mlm_nsp", _squad, "dev_f1"),
    "span_qa-bilstm": ("mlm_nsp", _and(_squad, head="bilstm"), "dev_f1"),
    "multiple_choice-linear": ("mlm_nsp", _swag, "dev_accuracy"),
    "multitask": (
        "mlm_nsp",
        _and(
            _tasks("syn_agree", "syn_chain"),
            multitask=[{"name": "mt", "tasks": ["syn_agree", "syn_chain"]}],
        ),
        "syn_chain/dev_accuracy",
    ),
}


class DtypeSpy:
    """Output dtypes of every Linear and LSTM forward while installed (a global hook)."""

    def __init__(self):
        self.linear: set[torch.dtype] = set()
        self.lstm: set[torch.dtype] = set()

    def __call__(self, module, args, output):
        if isinstance(module, nn.Linear):
            self.linear.add(output.dtype)
        elif isinstance(module, nn.LSTM):
            out = output[0]
            self.lstm.add(out.data.dtype)  # a PackedSequence: its .data

    def __enter__(self):
        self.handle = nn.modules.module.register_module_forward_hook(self)
        return self

    def __exit__(self, *exc):
        self.handle.remove()


def _run(case: str, tmp: Path, precision: str, device=CPU) -> tuple[dict, DtypeSpy]:
    objective, setup, _ = CASES[case]
    raw = tomllib.loads(TINY_MATRIX)
    raw["pretrain"]["variants"] = [{"name": "v", "pretrain": {"objective": objective}}]
    raw["finetune"]["restarts"] = 1
    setup(raw, tmp)
    plan = build_plan(validate(raw, "m.toml"), "m.toml")
    pretrained = tmp / "pt" / "model"
    if not pretrained.is_dir():  # fp32 pre-training, shared by both fine-tunes
        pretrain(plan.pretrain[0].config, tmp / "pt", TrialRuntime(CPU))
    shared = [t for t in plan.finetune if isinstance(t.config, MultitaskTrialConfig)]
    trial = shared[0] if shared else plan.finetune[0]
    body = finetune_multitask if shared else finetune
    runtime = TrialRuntime(device, precision=precision)
    with DtypeSpy() as spy:
        metrics = body(trial.config, pretrained, tmp / f"{device.type}-{precision}", runtime)
    return metrics, spy


@pytest.mark.parametrize("case", list(CASES))
def test_every_family_head_and_pooling_fine_tunes_in_bf16(case: str, tmp_path: Path):
    exact, exact_spy = _run(case, tmp_path, "fp32")
    mixed, spy = _run(case, tmp_path, "bf16")
    assert exact_spy.linear == {torch.float32}
    assert torch.bfloat16 in spy.linear, "bf16 autocast did not engage"
    if "bilstm" in case or "features" in case:
        assert spy.lstm == {torch.float32}, "the LSTM must run in fp32 under autocast"
    assert math.isfinite(mixed["train_loss"])
    # bf16 keeps 8 bits of mantissa: a few steps of training end near the fp32 loss
    assert mixed["train_loss"] == pytest.approx(exact["train_loss"], rel=0.01, abs=0.01)
    metric = CASES[case][2]
    if metric is not None:
        low = -1.0 if metric.endswith("pearson") else 0.0
        assert low <= mixed[metric] <= 1.0


@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
@pytest.mark.parametrize("case", list(CASES))
def test_every_family_head_and_pooling_fine_tunes_on_a_gpu(case: str, precision: str, tmp_path):
    """The same cases on a CUDA GPU, against its own fp32 (TF32) run; fp16 with its loss
    scaler, which may skip the first steps while it finds its scale: a looser match."""
    gpu = torch.device("cuda")
    exact, _ = _run(case, tmp_path, "fp32", gpu)
    mixed, spy = _run(case, tmp_path, precision, gpu)
    low = {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    assert low in spy.linear
    if "bilstm" in case or "features" in case:
        assert spy.lstm == {torch.float32}
    assert math.isfinite(mixed["train_loss"])
    tolerance = 0.01 if precision == "bf16" else 0.05
    assert mixed["train_loss"] == pytest.approx(exact["train_loss"], rel=tolerance, abs=tolerance)


def test_each_task_family_and_head_has_its_adapter():
    from bertabl.finetune.families import FAMILIES, family_of
    from bertabl.finetune.families.multiple_choice import MultipleChoice
    from bertabl.finetune.families.span_qa import SpanQA
    from bertabl.finetune.families.tagging import FeatureTagging, Tagging
    from bertabl.tasks.catalogue import TaskCatalogue
    from bertabl.tasks.spec import Family

    assert set(FAMILIES) == set(get_args(Family))  # every family tasks/spec.py names

    tasks = TaskCatalogue()
    assert family_of(tasks["conll2003"], "linear") is Tagging
    assert family_of(tasks["conll2003"], "features") is FeatureTagging  # Table 7's frozen BERT
    assert family_of(tasks["squad_v2"], "bilstm") is SpanQA
    assert family_of(tasks["swag"], "linear") is MultipleChoice
    assert family_of(tasks["stsb"], "linear").__name__ == "Regression"
    assert family_of(tasks["syn_agree"], "features").__name__ == "Classification"
