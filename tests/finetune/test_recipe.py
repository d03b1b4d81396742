"""Fine-tuning recipe axes (finetune.recipe): each one changes training the way it claims."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from transformers import BertForSequenceClassification, BertForTokenClassification

from bertabl.errors import MatrixError
from bertabl.finetune.epoch_loop import finetune
from bertabl.finetune.pooling import PooledClassifier
from bertabl.finetune.recipe import Tuning, accumulate_gradients, frozen_prefixes
from bertabl.matrix import build_plan
from bertabl.matrix.cells import cell_trials
from bertabl.matrix.load import tomllib, validate
from bertabl.orchestrate.checkpoint import Checkpointer
from bertabl.pretrain.step_loop import pretrain
from bertabl.training import Precision, TrialRuntime
from bertabl.trial.finetune import Recipe
from tests.conftest import TINY_MATRIX, KillAfter, Killed, model_from

CPU = torch.device("cpu")
FP32 = Precision(CPU)
VOCAB = 40


def _plan(**finetune):
    raw = tomllib.loads(TINY_MATRIX)
    raw["finetune"] |= finetune
    return build_plan(validate(raw, "m.toml"), "m.toml")


# --- the plan: recipe variants are rows, per-task overrides, ids --------------------------------


def test_berts_recipe_adds_nothing_to_trial_configs():
    plan = _plan()
    assert all("recipe" not in t.config and t.recipe == {} for t in plan.finetune)
    explicit = _plan(recipe={"layer_decay": 1.0, "pooling": "cls_pooler"})
    assert [t.id for t in explicit.finetune] == [t.id for t in plan.finetune]


def test_recipe_variants_are_rows_crossed_with_pretraining_rows():
    plan = _plan(
        recipe_variants=[
            {"name": "bert", "label": "BERT recipe"},
            {"name": "llrd", "label": "LLRD 0.8", "recipe": {"layer_decay": 0.8}},
            {"name": "ema", "recipe": {"ema_decay": 0.99, "pooling": "mean"}},
        ]
    )
    assert [r.name for r in plan.rows] == [
        "bert_base+bert",
        "bert_base+llrd",
        "bert_base+ema",
        "no_nsp+bert",
        "no_nsp+llrd",
        "no_nsp+ema",
    ]
    assert plan.rows[1].label == "MLM + NSP, LLRD 0.8"
    assert ("recipe.layer_decay", 0.8) in plan.rows[1].settings
    # 2 pre-training rows x 3 recipes x 2 tasks x 1 grid point x 2 restarts
    assert len(plan.finetune) == 24
    for row in plan.rows:
        for task in ("syn_agree", "syn_chain"):
            cell = cell_trials(plan, row, task)
            assert len(cell) == 2
            assert all(t.pretrain_id == row.pretrain_id for t in cell)
    (llrd,) = {json.dumps(t.recipe) for t in cell_trials(plan, plan.rows[1], "syn_agree")}
    assert json.loads(llrd) == {"layer_decay": 0.8}
    ema = cell_trials(plan, plan.rows[2], "syn_chain")[0]
    assert ema.config.recipe.changes() == {"pooling": "mean", "ema_decay": 0.99}


def test_only_recipe_variants_name_rows_after_the_recipe():
    raw = tomllib.loads(TINY_MATRIX)
    del raw["pretrain"]["variants"]
    raw["finetune"]["recipe_variants"] = [{"name": "a"}, {"name": "b", "head": "bilstm"}]
    plan = build_plan(validate(raw, "m.toml"))
    assert [(r.name, r.head[0]) for r in plan.rows] == [("a", "linear"), ("b", "bilstm")]
    assert all(t.config.head == "bilstm" for t in cell_trials(plan, plan.rows[1], "syn_agree"))


def test_a_tasks_recipe_overrides_the_matrix_and_variants_override_the_task():
    plan = _plan(
        recipe={"freeze_embeddings": True},
        task_settings={"syn_chain": {"recipe": {"layer_decay": 0.5, "ema_decay": 0.9}}},
        recipe_variants=[{"name": "plain"}, {"name": "flat", "recipe": {"layer_decay": 1.0}}],
    )
    plain, flat = plan.rows[:2]
    assert cell_trials(plan, plain, "syn_agree")[0].recipe == {"freeze_embeddings": True}
    assert cell_trials(plan, plain, "syn_chain")[0].recipe == {
        "layer_decay": 0.5,
        "freeze_embeddings": True,
        "ema_decay": 0.9,
    }
    assert cell_trials(plan, flat, "syn_chain")[0].recipe == {
        "freeze_embeddings": True,
        "ema_decay": 0.9,
    }
    # plain and flat fine-tune syn_agree identically: one set of trials, in both cells
    assert cell_trials(plan, plain, "syn_agree") == cell_trials(plan, flat, "syn_agree")


def test_recipe_axes_are_a_product_of_rows():
    plan = _plan(recipe_axes={"layer_decay": [1.0, 0.8], "ema_decay": [0.0, 0.9]})
    names = [r.name for r in plan.rows if r.pretrain_id == plan.rows[0].pretrain_id]
    assert names == [
        "bert_base+layer_decay=1.0,ema_decay=0.0",
        "bert_base+layer_decay=1.0,ema_decay=0.9",
        "bert_base+layer_decay=0.8,ema_decay=0.0",
        "bert_base+layer_decay=0.8,ema_decay=0.9",
    ]
    assert len(plan.rows) == 8 and len(plan.finetune) == 8 * 4
    # the BERT-recipe combination runs exactly the trials of a matrix without recipes
    default = cell_trials(plan, plan.rows[0], "syn_agree")
    assert {t.id for t in default} == {
        t.id
        for t in _plan().finetune
        if t.task == "syn_agree" and t.pretrain_id == default[0].pretrain_id
    }
    assert cell_trials(plan, plan.rows[3], "syn_chain")[0].recipe == {
        "layer_decay": 0.8,
        "ema_decay": 0.9,
    }


def test_recipe_axes_cross_recipe_variants():
    plan = _plan(
        recipe_variants=[
            {"name": "cls", "recipe": {"pooling": "cls"}},
            {"name": "mean", "recipe": {"pooling": "mean"}},
        ],
        recipe_axes={"freeze_layers": [0, 1]},
    )
    assert [r.label for r in plan.rows[:4]] == [
        "MLM + NSP, cls (freeze_layers=0)",
        "MLM + NSP, cls (freeze_layers=1)",
        "MLM + NSP, mean (freeze_layers=0)",
        "MLM + NSP, mean (freeze_layers=1)",
    ]
    assert cell_trials(plan, plan.rows[3], "syn_agree")[0].recipe == {
        "freeze_layers": 1,
        "pooling": "mean",
    }
    with pytest.raises(MatrixError, match=r"cls/freeze_layers=2\): freeze_layers = 2 but"):
        _plan(
            recipe_variants=[{"name": "cls", "recipe": {"pooling": "cls"}}],
            recipe_axes={"freeze_layers": [2]},
        )


@pytest.mark.parametrize(
    ("axes", "message"),
    [
        ({"layer_deacy": [0.8]}, "unknown recipe key 'layer_deacy'"),
        ({"layer_decay": []}, "has no values"),
        ({"layer_decay": [0.8, 0.8]}, "repeats a value"),
        ({"layer_decay": [0.8, 2.0]}, r"recipe_axes.layer_decay\[1\] = 2.0: Input should be less"),
        ({"pooling": ["max"]}, r"recipe_axes.pooling\[0\] = 'max'"),
    ],
)
def test_recipe_axes_errors(axes, message):
    with pytest.raises(MatrixError, match=message):
        _plan(recipe_axes=axes)


def test_int_and_float_spellings_give_one_recipe_id():
    two = _plan(recipe={"head_lr_scale": 2})
    assert [t.id for t in two.finetune] == [
        t.id for t in _plan(recipe={"head_lr_scale": 2.0}).finetune
    ]
    assert two.finetune[0].recipe == {"head_lr_scale": 2.0}


@pytest.mark.parametrize(
    ("finetune", "message"),
    [
        ({"recipe": {"layer_deacy": 0.8}}, r"finetune\.recipe\.layer_deacy: unknown key"),
        ({"recipe": {"layer_decay": 1.5}}, r"finetune\.recipe\.layer_decay: .*less than or equal"),
        (
            {"recipe_variants": [{"name": "x", "recipe": {"pooling": "max"}}]},
            r"finetune\.recipe_variants\[0\]\.recipe\.pooling",
        ),
        ({"recipe": {"freeze_layers": 2}}, "freeze_layers = 2 but the model has 1 layers"),
        ({"recipe": {"unfreeze_every": 1}}, "unfreeze_every needs something frozen"),
        (
            {"recipe_variants": [{"name": "x", "recipe": {"unfreeze_every": 1}}]},
            r"recipe_variants\[0\] \(x\), task syn_agree: unfreeze_every needs something frozen",
        ),
        ({"recipe": {"grad_accumulation": 32}}, "exceeds finetune.grid.batch_size 16"),
        (
            {"head": "bilstm", "recipe": {"pooling": "mean"}},
            "pooling = 'mean' replaces the linear head's pooling",
        ),
        (
            {"task_settings": {"sst2": {"recipe": {"ema_decay": 0.9}}}},
            "task_settings names task 'sst2'",
        ),
        (
            {"recipe_variants": [{"name": "x"}, {"name": "x"}]},
            "recipe variant names must be unique",
        ),
    ],
)
def test_recipe_errors_name_their_key(finetune, message):
    with pytest.raises(MatrixError, match=message):
        _plan(**finetune)


def test_cls_pooling_on_a_left_to_right_model_is_refused():
    raw = tomllib.loads(TINY_MATRIX)
    raw["pretrain"]["variants"] = [{"name": "ltr", "pretrain": {"objective": "ltr"}}]
    raw["finetune"]["recipe"] = {"pooling": "cls"}
    with pytest.raises(MatrixError, match="left-to-right model"):
        build_plan(validate(raw, "m.toml"))


# --- the mechanics, on tiny models ---------------------------------------------------------------


@pytest.fixture(scope="module")
def encoder_dir(tmp_path_factory) -> Path:
    """A 2-layer, hidden-16 BERT without dropout (so gradients are deterministic)."""
    path = tmp_path_factory.mktemp("encoder")
    torch.manual_seed(0)
    config = {
        "objective": "mlm_nsp",
        "model": {
            "layers": 2,
            "hidden": 16,
            "heads": 2,
            "intermediate": 32,
            "dropout": 0.0,
            "max_position": 32,
        },
    }
    model_from(config, vocab_size=VOCAB, pad_token_id=0).save_pretrained(path)
    return path


def _config(recipe: dict, lr: float = 1e-3, weight_decay: float = 0.01) -> SimpleNamespace:
    """The settings Tuning reads from a fine-tuning trial config."""
    return SimpleNamespace(
        learning_rate=lr,
        weight_decay=weight_decay,
        warmup_fraction=0.0,
        recipe=Recipe.model_validate(recipe),
    )


def _items(n: int, seed: int = 0, num_labels: int = 2) -> list[dict]:
    """Examples of different lengths (4..11 tokens), as the collator gets them."""
    g = torch.Generator().manual_seed(seed)
    items = []
    for i in range(n):
        length = 4 + (i * 3) % 8
        ids = torch.randint(5, VOCAB, (length,), generator=g).tolist()
        label = float(i % 5) / 2 if num_labels == 1 else i % num_labels
        items.append({"input_ids": ids, "labels": label})
    return items


def _collate(items: list[dict]) -> dict[str, torch.Tensor]:
    longest = max(len(x["input_ids"]) for x in items)
    ids = torch.tensor([x["input_ids"] + [0] * (longest - len(x["input_ids"])) for x in items])
    labels = [x["labels"] for x in items]
    if isinstance(labels[0], list):  # token labels, padded with -100
        labels = [lab + [-100] * (longest - len(lab)) for lab in labels]
    return {"input_ids": ids, "attention_mask": (ids != 0).long(), "labels": torch.tensor(labels)}


def _classifier(encoder_dir: Path, num_labels: int = 2):
    torch.manual_seed(1)
    return BertForSequenceClassification.from_pretrained(encoder_dir, num_labels=num_labels)


def _lr_of(optimizer: torch.optim.Optimizer) -> dict[int, tuple[float, float]]:
    return {
        id(p): (group["lr"], group["weight_decay"])
        for group in optimizer.param_groups
        for p in group["params"]
    }


def test_layer_wise_decay_and_head_lr_read_from_the_optimizer(encoder_dir: Path):
    model = _classifier(encoder_dir)
    tuning = Tuning(model, _config({"layer_decay": 0.5, "head_lr_scale": 10.0}), total_steps=10)
    lrs = _lr_of(tuning.optimizer)
    named = dict(model.named_parameters())
    # L = 2: embeddings at 0.5^3, layer 0 at 0.5^2, layer 1 at 0.5^1, pooler at 1, head at 10
    expected = {
        "bert.embeddings.word_embeddings.weight": (1.25e-4, 0.01),
        "bert.embeddings.LayerNorm.weight": (1.25e-4, 0.0),
        "bert.encoder.layer.0.attention.self.query.weight": (2.5e-4, 0.01),
        "bert.encoder.layer.0.attention.self.query.bias": (2.5e-4, 0.0),
        "bert.encoder.layer.1.output.dense.weight": (5e-4, 0.01),
        "bert.pooler.dense.weight": (1e-3, 0.01),
        "classifier.weight": (1e-2, 0.01),
        "classifier.bias": (1e-2, 0.0),
    }
    for name, (lr, decay) in expected.items():
        assert lrs[id(named[name])] == pytest.approx((lr, decay), rel=1e-12), name
    assert len(lrs) == len(named)  # every parameter is in exactly one group


def test_berts_recipe_is_berts_two_groups(encoder_dir: Path):
    model = _classifier(encoder_dir)
    groups = Tuning(model, _config({}), total_steps=10).optimizer.param_groups
    assert [(g["lr"], g["weight_decay"]) for g in groups] == [(1e-3, 0.01), (1e-3, 0.0)]
    no_decay = {id(p) for p in groups[1]["params"]}
    for name, param in model.named_parameters():
        assert (id(param) in no_decay) == (param.ndim == 1 or "LayerNorm" in name), name


def test_weight_decay_exclusion_off_decays_everything(encoder_dir: Path):
    model = _classifier(encoder_dir)
    tuning = Tuning(model, _config({"decay_exclusion": False}), total_steps=10)
    assert [g["weight_decay"] for g in tuning.optimizer.param_groups] == [0.01]


def _snapshot(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.named_parameters()}


def _changed(before, model) -> set[str]:
    return {k for k, v in model.named_parameters() if not torch.equal(before[k], v)}


def test_frozen_weights_are_unchanged_and_thaw_top_down(encoder_dir: Path):
    model = _classifier(encoder_dir)
    recipe = {"freeze_embeddings": True, "freeze_layers": 2, "unfreeze_every": 1}
    tuning = Tuning(model, _config(recipe), total_steps=100)
    items = _items(8)

    def epoch(number: int) -> set[str]:
        """The parts of the model whose weights changed in epoch `number` (3 steps)."""
        before = _snapshot(model)
        tuning.start_epoch(number)
        for _ in range(3):
            tuning.step(items, _collate, FP32, "test")
        return {_part(name) for name in _changed(before, model)}

    # (weight decay 0.01 would move any parameter AdamW touched, even with a zero gradient)
    assert epoch(1) == {"pooler", "classifier"}
    assert epoch(2) == {"layer.1", "pooler", "classifier"}
    assert epoch(3) == {"layer.0", "layer.1", "pooler", "classifier"}
    assert epoch(4) == {"embeddings", "layer.0", "layer.1", "pooler", "classifier"}


def _part(name: str) -> str:
    """bert.encoder.layer.1.output.dense.weight -> layer.1; bert.pooler... -> pooler."""
    parts = name.split(".")
    if parts[0] != "bert":
        return parts[0]
    return ".".join(parts[2:4]) if parts[1] == "encoder" else parts[1]


def test_frozen_prefixes_by_epoch():
    recipe = Recipe(freeze_layers=3, freeze_embeddings=True, unfreeze_every=2)
    layer = "encoder.layer.{}.".format
    assert frozen_prefixes(recipe, 1) == [layer(2), layer(1), layer(0), "embeddings."]
    assert frozen_prefixes(recipe, 2) == frozen_prefixes(recipe, 1)
    assert frozen_prefixes(recipe, 3) == [layer(1), layer(0), "embeddings."]
    assert frozen_prefixes(recipe, 7) == ["embeddings."]
    assert frozen_prefixes(recipe, 9) == []
    assert frozen_prefixes(Recipe(freeze_layers=1), 100) == [layer(0)]


def test_ema_weights_are_the_closed_form_average(encoder_dir: Path):
    decay = 0.6
    model = _classifier(encoder_dir)
    tuning = Tuning(model, _config({"ema_decay": decay}, lr=1e-2), total_steps=4)
    tuning.start_epoch(1)
    items = _items(8)
    weights = []  # w_1 .. w_T, after each optimizer step
    for _ in range(4):
        tuning.step(items, _collate, FP32, "test")
        weights.append(_snapshot(model))
    # The average starts at w_1: ema_1 = w_1, ema_t = d ema_{t-1} + (1-d) w_t, so
    # ema_4 = d^3 w_1 + (1-d) (d^2 w_2 + d w_3 + w_4)
    coefficients = [decay**3, (1 - decay) * decay**2, (1 - decay) * decay, 1 - decay]
    assert sum(coefficients) == pytest.approx(1.0)
    with tuning.evaluation_weights():
        for name, param in model.named_parameters():
            expected = sum(c * w[name] for c, w in zip(coefficients, weights, strict=True))
            torch.testing.assert_close(param, expected, rtol=0, atol=1e-6)
        assert _changed(weights[-1], model)  # the average is not the last weights
    assert not _changed(weights[-1], model)  # training resumes from its own weights


@pytest.mark.parametrize("num_labels", [2, 1], ids=["classification", "regression"])
@pytest.mark.parametrize("parts", [2, 3, 8])
def test_accumulated_gradient_equals_the_whole_batch(encoder_dir: Path, num_labels, parts):
    """k micro-batches (uneven when 8 % k != 0, each padded to its own longest) == one batch."""
    items = _items(8, num_labels=num_labels)
    whole = _classifier(encoder_dir, num_labels)
    loss = accumulate_gradients(whole, items, _collate, 1, FP32, "test")
    split = _classifier(encoder_dir, num_labels)
    split_loss = accumulate_gradients(split, items, _collate, parts, FP32, "test")
    assert split_loss == pytest.approx(loss, abs=1e-6)
    for (name, a), b in zip(whole.named_parameters(), split.parameters(), strict=True):
        torch.testing.assert_close(b.grad, a.grad, rtol=0, atol=1e-6, msg=name)


def test_accumulated_token_gradient_weights_by_labelled_tokens(encoder_dir: Path):
    """Tagging losses average over labelled tokens, which micro-batches hold unevenly."""
    items = _items(6)
    for i, item in enumerate(items):  # example i labels only its first i+1 tokens
        n = len(item["input_ids"])
        item["labels"] = [(j % 3) if j <= i else -100 for j in range(n)]

    def model():
        torch.manual_seed(1)
        return BertForTokenClassification.from_pretrained(encoder_dir, num_labels=3)

    whole, split = model(), model()
    accumulate_gradients(whole, items, _collate, 1, FP32, "test")
    accumulate_gradients(split, items, _collate, 2, FP32, "test")
    for (name, a), b in zip(whole.named_parameters(), split.parameters(), strict=True):
        torch.testing.assert_close(b.grad, a.grad, rtol=0, atol=1e-6, msg=name)


# --- pooling heads --------------------------------------------------------------------------------


@pytest.mark.parametrize("pooling", ["cls", "mean", "attention", "cnn"])
def test_pooling_heads_ignore_padding(encoder_dir: Path, pooling: str):
    torch.manual_seed(0)
    model = PooledClassifier.build(encoder_dir, 3, pooling).eval()
    short = _collate(_items(3)[:1])  # one 4-token example
    padded = _collate([_items(3)[0], _items(3)[2]])  # the same, padded to 10 tokens
    a = model(input_ids=short["input_ids"], attention_mask=short["attention_mask"]).logits
    b = model(input_ids=padded["input_ids"], attention_mask=padded["attention_mask"]).logits
    assert padded["input_ids"].shape[1] > short["input_ids"].shape[1]
    torch.testing.assert_close(b[:1], a, rtol=0, atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
@pytest.mark.parametrize("pooling", ["cls", "mean", "attention", "cnn"])
def test_pooling_heads_under_autocast(encoder_dir: Path, pooling: str, dtype: torch.dtype):
    """Each pooling under CPU autocast (the dtypes a GPU run uses): finite, padding still
    ignored, and near the fp32 logits. Attention pooling used to fill fp32's minimum into the
    autocast scores, which overflows bf16 and fp16."""
    torch.manual_seed(0)
    model = PooledClassifier.build(encoder_dir, 3, pooling).eval()
    short = _collate(_items(3)[:1])
    padded = _collate([_items(3)[0], _items(3)[2]])
    exact = model(input_ids=short["input_ids"], attention_mask=short["attention_mask"]).logits
    with torch.autocast("cpu", dtype=dtype):
        a = model(input_ids=short["input_ids"], attention_mask=short["attention_mask"]).logits
        b = model(input_ids=padded["input_ids"], attention_mask=padded["attention_mask"]).logits
    assert a.dtype == dtype and torch.isfinite(b).all()
    torch.testing.assert_close(b[:1].float(), a.float(), rtol=0, atol=2e-2)
    torch.testing.assert_close(a.float(), exact, rtol=0, atol=2e-2)


def test_attention_pooling_weights_are_fp32_and_skip_padding(encoder_dir: Path):
    torch.manual_seed(0)
    model = PooledClassifier.build(encoder_dir, 2, "attention").eval()
    batch = _collate(_items(2))
    mask = batch["attention_mask"]
    hidden = model.bert(input_ids=batch["input_ids"], attention_mask=mask).last_hidden_state
    seen = {}
    model.score.register_forward_hook(lambda m, args, out: seen.update(scores=out.dtype))
    with torch.autocast("cpu", dtype=torch.float16):
        pooled = model.pool(hidden.half(), mask)
    assert seen["scores"] == torch.float16  # autocast's linear, then the softmax in fp32
    assert pooled.dtype == torch.float32 and torch.isfinite(pooled).all()
    n = int(mask[0].sum())  # the shorter example: its padding gets no weight
    scores = hidden[0, :n].half().float() @ model.score.weight[0] + model.score.bias
    expected = scores.softmax(0) @ hidden[0, :n].half().float()
    torch.testing.assert_close(pooled[0], expected, rtol=0, atol=2e-2)


def test_pooling_by_hand(encoder_dir: Path):
    """cls, mean and attention pooling against their definitions on the encoder's states."""
    batch = _collate(_items(2))
    mask = batch["attention_mask"]
    pooled = {}
    for pooling in ("cls", "mean", "attention"):
        torch.manual_seed(0)
        model = PooledClassifier.build(encoder_dir, 2, pooling).eval()
        hidden = model.bert(input_ids=batch["input_ids"], attention_mask=mask).last_hidden_state
        pooled[pooling] = model.pool(hidden, mask)
    n = int(mask[0].sum())  # the shorter example's real tokens
    states = hidden[0, :n]
    torch.testing.assert_close(pooled["cls"][0], hidden[0, 0])
    torch.testing.assert_close(pooled["mean"][0], states.mean(0))
    scores = states @ model.score.weight[0] + model.score.bias
    torch.testing.assert_close(pooled["attention"][0], scores.softmax(0) @ states)


# --- the trial body with a recipe -----------------------------------------------------------------


def test_recipe_trial_fine_tunes_and_resumes_exactly(tmp_path: Path):
    plan = _plan(
        grid={"batch_size": [16], "learning_rate": [1e-3], "epochs": [2]},
        recipe={
            "layer_decay": 0.8,
            "head_lr_scale": 5.0,
            "freeze_embeddings": True,
            "unfreeze_every": 1,
            "pooling": "attention",
            "ema_decay": 0.9,
            "grad_accumulation": 2,
        },
    )
    pretrain(plan.pretrain[0].config, tmp_path / "pt", TrialRuntime(CPU))
    trial = cell_trials(plan, plan.rows[0], "syn_agree")[0]
    straight = finetune(trial.config, tmp_path / "pt" / "model", tmp_path / "a", TrialRuntime(CPU))
    assert 0.0 <= straight["dev_accuracy"] <= 1.0

    ckpt = tmp_path / "b" / "ckpt"
    with pytest.raises(Killed):
        finetune(
            trial.config,
            tmp_path / "pt" / "model",
            tmp_path / "b",
            TrialRuntime(CPU, checkpoints=KillAfter(ckpt, at_step=5), checkpoint_every=5),
        )
    runtime = TrialRuntime(CPU, checkpoints=Checkpointer(ckpt), checkpoint_every=5)
    resumed = finetune(trial.config, tmp_path / "pt" / "model", tmp_path / "b", runtime)
    assert runtime.resumed_from == 5
    assert resumed == straight


def test_bf16_autocast_follows_resources_precision(encoder_dir: Path):
    """resources.precision = "bf16" autocasts the forward pass (CPU too); "auto" on CPU is fp32."""
    assert Precision.for_device(CPU, "auto").dtype is None
    bf16 = Precision.for_device(CPU, "bf16")
    items = _items(8)
    exact = _classifier(encoder_dir)
    accumulate_gradients(exact, items, _collate, 2, FP32, "test")
    mixed = _classifier(encoder_dir)
    accumulate_gradients(mixed, items, _collate, 2, bf16, "test")
    grad = dict(mixed.named_parameters())["bert.encoder.layer.0.output.dense.weight"].grad
    reference = dict(exact.named_parameters())["bert.encoder.layer.0.output.dense.weight"].grad
    assert grad.dtype == torch.float32  # weights and gradients stay fp32 under autocast
    assert not torch.equal(grad, reference)  # the forward pass did run in bf16
    assert (grad - reference).norm() < 0.05 * reference.norm()
