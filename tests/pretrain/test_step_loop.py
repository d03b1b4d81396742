"""The pre-training loop: intermediate models for fine-tuning (the paper's Figure 5), the
no-pre-training control, deterministic and chunked runs, gradient accumulation (the same result
as the whole batch, an exact resume)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from bertabl.cli import app
from bertabl.errors import MatrixError, UserError
from bertabl.matrix import build_plan
from bertabl.matrix.cells import cell_trials
from bertabl.matrix.load import tomllib, validate
from bertabl.orchestrate.checkpoint import Checkpointer
from bertabl.pretrain.step_loop import pretrain
from bertabl.training import TrialRuntime
from bertabl.trial.files import model_dir_name as intermediate_model_name
from tests.conftest import TINY_MATRIX, KillAfter, Killed


def _plan(steps):
    raw = tomllib.loads(TINY_MATRIX)
    raw["finetune"]["pretrain_steps"] = steps
    return build_plan(validate(raw, "m.toml"), "m.toml")


def test_rows_and_trials_per_pretraining_step():
    plan = _plan([5, 10])  # pretrain.steps = 10: step 10 is the final model
    assert [r.name for r in plan.rows] == ["bert_base@5", "bert_base@10", "no_nsp@5", "no_nsp@10"]
    assert [r.pretrain_step for r in plan.rows] == [5, None, 5, None]
    assert len(plan.pretrain) == 2  # the step is a fine-tuning setting: same pre-training trials
    assert len(plan.finetune) == 2 * 2 * 2 * 2  # 2 variants x 2 steps x 2 tasks x 2 restarts
    assert plan.intermediate_steps() == {t.id: [5] for t in plan.pretrain}
    early, final = (
        cell_trials(plan, plan.rows[0], "syn_agree"),
        cell_trials(plan, plan.rows[1], "syn_agree"),
    )
    assert {t.pretrain_step for t in early} == {5} and {t.pretrain_step for t in final} == {None}
    assert not {t.id for t in early} & {t.id for t in final}
    # without pretrain_steps the plan is the same as with only the last step
    assert {t.id for t in _plan([]).finetune} == {t.id for t in _plan([10]).finetune}


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        ([5, 20], r"finetune\.pretrain_steps\[1\]: step 20 is beyond pretrain\.steps = 10"),
        ([10, 5], r"finetune\.pretrain_steps: .*increasing order"),
    ],
)
def test_bad_steps_are_matrix_errors(steps, message):
    with pytest.raises(MatrixError, match=message):
        _plan(steps)


def test_pretraining_saves_the_requested_intermediate_models(tmp_path: Path):
    plan = _plan([5, 10])
    config = plan.pretrain[0].config
    runtime = TrialRuntime(torch.device("cpu"), save_steps=(5,))
    pretrain(config, tmp_path, runtime)
    early = load_file(tmp_path / intermediate_model_name(5) / "model.safetensors")
    final = load_file(tmp_path / "model" / "model.safetensors")
    assert early.keys() == final.keys()
    assert any(not torch.equal(early[k], final[k]) for k in early)
    assert (tmp_path / intermediate_model_name(5) / "tokenizer.json").is_file()
    assert not list(tmp_path.glob("*.partial"))


@pytest.mark.slow
def test_figure5_style_run_through_ray(tiny_matrix: Path, tmp_path: Path):
    text = tiny_matrix.read_text().replace("restarts = 2", "restarts = 1\npretrain_steps = [5, 10]")
    tiny_matrix.write_text(text)
    run_dir = tmp_path / "run"
    result = CliRunner().invoke(app, ["run", str(tiny_matrix), "--run-dir", str(run_dir)])
    assert result.exit_code == 0, result.output
    for pt in run_dir.glob("trials/pt-*"):
        assert (pt / intermediate_model_name(5)).is_dir() and (pt / "model").is_dir()
    report = (run_dir / "tiny.md").read_text()
    for label in ("MLM + NSP (5 steps)", "MLM + NSP (10 steps)", "MLM only (5 steps)"):
        assert f"| {label} |" in report

    # Asking for a step the finished pre-training did not save re-runs it to save that model,
    # in its own folder: the final model the finished fine-tunes read stays as it was.
    final = {p: p.read_bytes() for p in run_dir.glob("trials/pt-*/model/*")}
    again = tiny_matrix.read_text().replace("pretrain_steps = [5, 10]", "pretrain_steps = [3, 10]")
    tiny_matrix.write_text(again)
    result = CliRunner().invoke(app, ["run", str(tiny_matrix), "--run-dir", str(run_dir)])
    assert result.exit_code == 0, result.output
    for pt in run_dir.glob("trials/pt-*"):
        assert (pt / intermediate_model_name(3)).is_dir()
    assert final and {p: p.read_bytes() for p in run_dir.glob("trials/pt-*/model/*")} == final


def test_deterministic_pretraining_is_on_in_the_body_and_repeats_to_the_bit(
    tmp_path: Path, monkeypatch
):
    """resources.deterministic reaches the body (every op ran with deterministic algorithms:
    none raised on CPU); the run repeats bit for bit, as CPU runs do anyway."""
    import bertabl.pretrain.step_loop as train_module

    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    seen = []
    step = train_module.apply_gradients

    def spy(*args, **kwargs):
        seen.append(torch.are_deterministic_algorithms_enabled())
        return step(*args, **kwargs)

    monkeypatch.setattr(train_module, "apply_gradients", spy)
    config = _plan([]).pretrain[0].config
    try:
        runs = [
            pretrain(
                config, tmp_path / str(i), TrialRuntime(torch.device("cpu"), deterministic=True)
            )
            for i in range(2)
        ]
    finally:
        torch.use_deterministic_algorithms(False)
    assert seen == [True] * 2 * config.pretrain.steps
    assert runs[0] == runs[1]
    weights = [load_file(tmp_path / str(i) / "model" / "model.safetensors") for i in range(2)]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_ltr_pretraining_with_its_loss_in_chunks_matches_the_dense_run(tmp_path: Path, monkeypatch):
    """The loop's chunked-LTR branch end to end: the same losses as dense logits, to float
    rounding (the summation order differs)."""
    import bertabl.pretrain.model as model_module

    raw = tomllib.loads(TINY_MATRIX)
    raw["pretrain"]["variants"] = [{"name": "ltr", "pretrain": {"objective": "ltr"}}]
    config = build_plan(validate(raw, "m.toml"), "m.toml").pretrain[0].config
    dense = pretrain(config, tmp_path / "dense", TrialRuntime(torch.device("cpu")))
    vocab = len(
        load_file(tmp_path / "dense" / "model" / "model.safetensors")["cls.predictions.bias"]
    )
    monkeypatch.setattr(model_module, "DENSE_LOGITS_LIMIT", 50 * vocab)  # chunks of 50 positions
    chunked = pretrain(config, tmp_path / "chunked", TrialRuntime(torch.device("cpu")))
    assert chunked.keys() == dense.keys()
    for key in ("loss", "ltr_loss", "heldout_loss"):  # held-out: the same final model
        assert chunked[key] == pytest.approx(dense[key], rel=1e-4), key


def _with_control(extra: dict | None = None):
    raw = tomllib.loads(TINY_MATRIX)
    raw["pretrain"]["variants"].append(
        {"name": "none", "label": "No pre-training", "pretrain": {"objective": "none"}}
    )
    raw["finetune"] |= extra or {}
    return build_plan(validate(raw, "m.toml"), "m.toml")


def test_the_no_pretraining_control_trains_nothing_and_costs_nothing():
    plan = _with_control()
    none = plan.model(plan.rows[-1].pretrain_id)
    config = none.config.pretrain
    assert (config.objective, config.steps, config.tokens, none.flops) == ("none", 0, 0, 0)
    bert = plan.model(plan.rows[0].pretrain_id)
    assert none.parameters == bert.parameters  # BERT's architecture, pooler and NSP head included
    # settings that only steer training do not make another control trial
    raw = tomllib.loads(TINY_MATRIX)
    raw["pretrain"] |= {"steps": 99, "learning_rate": 0.5, "masking": {"probability": 0.3}}
    raw["pretrain"]["variants"] = [{"name": "none", "pretrain": {"objective": "none"}}]
    assert build_plan(validate(raw, "m.toml"), "m.toml").rows[0].pretrain_id == none.id
    # in a Figure 5 matrix the control is one row: its model is the same at every step
    names = [r.name for r in _with_control({"pretrain_steps": [5, 10]}).rows]
    assert names == ["bert_base@5", "bert_base@10", "no_nsp@5", "no_nsp@10", "none"]


def test_the_no_pretraining_control_saves_the_seeded_initialisation(tmp_path: Path):
    from transformers import AutoModelForSequenceClassification, BertConfig, BertForPreTraining

    config = _with_control().model(_with_control().rows[-1].pretrain_id).config
    metrics = pretrain(config, tmp_path / "a", TrialRuntime(torch.device("cpu")))
    assert metrics == {"step": 0}
    saved = load_file(tmp_path / "a" / "model" / "model.safetensors")
    pretrain(config, tmp_path / "b", TrialRuntime(torch.device("cpu")))
    again = load_file(tmp_path / "b" / "model" / "model.safetensors")
    assert all(torch.equal(saved[k], again[k]) for k in saved)  # a function of the seed
    torch.manual_seed(config.pretrain.seed)
    fresh = BertForPreTraining(BertConfig.from_pretrained(tmp_path / "a" / "model")).state_dict()
    assert all(torch.equal(saved[k], fresh[k]) for k in saved)  # BERT's own initialisation
    model = AutoModelForSequenceClassification.from_pretrained(tmp_path / "a" / "model")
    pooler = model.bert.pooler.dense.weight
    assert torch.equal(pooler, saved["bert.pooler.dense.weight"])  # fine-tuning reads it all


# --- gradient accumulation -----------------------------------------------------------------

CPU = torch.device("cpu")
STEPS = 6
OBJECTIVES = {"mlm_nsp": 0, "mlm": 1}


@pytest.fixture(scope="module")
def plan():
    raw = tomllib.loads(TINY_MATRIX)
    raw["pretrain"]["steps"] = STEPS
    raw["pretrain"]["model"]["dropout"] = 0.0  # layouts then compute the same function
    return build_plan(validate(raw, "tiny.toml"))


def _run(config, out_dir: Path, **runtime) -> tuple[dict, list[dict], dict[str, torch.Tensor]]:
    reports: list[dict] = []
    metrics = pretrain(
        config,
        out_dir,
        TrialRuntime(CPU, report=lambda m: reports.append(dict(m)), **runtime),
    )
    return metrics, reports, load_file(out_dir / "model" / "model.safetensors")


def _max_weight_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max((a[k].double() - b[k].double()).abs().max().item() for k in a)


def _assert_close_metrics(a: dict, b: dict, tol: float) -> None:
    assert a.keys() == b.keys()
    for key in a:
        if key == "mlm_perplexity":  # exp(mlm_loss): compare relatively
            assert a[key] == pytest.approx(b[key], rel=tol), key
        elif key != "seconds":
            assert a[key] == pytest.approx(b[key], abs=tol, rel=0), key


@pytest.mark.parametrize("micro", [4, 2])
@pytest.mark.parametrize("objective", OBJECTIVES)
def test_accumulation_matches_the_full_batch(plan, tmp_path: Path, objective: str, micro: int):
    config = plan.pretrain[OBJECTIVES[objective]].config
    assert config.pretrain.batch_size == 8
    full, _, full_weights = _run(config, tmp_path / "full", micro_batch_size=8)
    accumulated, _, weights = _run(config, tmp_path / "acc", micro_batch_size=micro)

    assert _max_weight_diff(full_weights, weights) < 1e-5
    _assert_close_metrics(full, accumulated, 1e-5)
    assert full["step"] == STEPS and "mlm_loss" in full


@pytest.mark.parametrize("objective", OBJECTIVES)
def test_resume_with_accumulation_is_bit_identical(plan, tmp_path: Path, objective: str):
    config = plan.pretrain[OBJECTIVES[objective]].config
    straight, _, straight_weights = _run(config, tmp_path / "straight", micro_batch_size=2)

    resumed_dir = tmp_path / "resumed"
    with pytest.raises(Killed):
        _run(
            config,
            resumed_dir,
            micro_batch_size=2,
            checkpoints=KillAfter(resumed_dir / "ckpt", at_step=3),
            checkpoint_every=3,
        )
    runtime = TrialRuntime(
        CPU, checkpoints=Checkpointer(resumed_dir / "ckpt"), checkpoint_every=3, micro_batch_size=2
    )
    resumed = pretrain(config, resumed_dir, runtime)

    assert runtime.resumed_from == 3
    assert resumed == straight
    weights = load_file(resumed_dir / "model" / "model.safetensors")
    assert all(torch.equal(straight_weights[k], weights[k]) for k in weights)


def test_a_layout_that_does_not_divide_fails_before_anything_is_built(plan, tmp_path: Path):
    # pretrain() checks the batch layout before it builds or starts anything
    config = plan.pretrain[0].config
    with pytest.raises(UserError, match="resources.micro_batch_size"):
        pretrain(config, tmp_path, TrialRuntime(CPU, micro_batch_size=3))
    assert not any(tmp_path.iterdir())
