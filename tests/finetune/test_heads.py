"""Fine-tuning heads per row: Table 5's '+ BiLSTM' row is one matrix entry."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from bertabl.errors import MatrixError
from bertabl.finetune.epoch_loop import finetune
from bertabl.finetune.heads import BiLSTMClassifier
from bertabl.matrix import build_plan
from bertabl.matrix.cells import cell_trials
from bertabl.matrix.load import tomllib, validate
from bertabl.pretrain.step_loop import pretrain
from bertabl.training import TrialRuntime
from tests.conftest import TINY_MATRIX, fixture_copies, model_from

TINY_MODEL = {"intermediate": 32, "dropout": 0.0, "max_position": 32}
TABLE5_ROWS = [
    {"name": "ltr", "pretrain": {"objective": "ltr"}},
    {"name": "ltr_bilstm", "pretrain": {"objective": "ltr"}, "finetune": {"head": "bilstm"}},
]


def _plan(variants):
    raw = tomllib.loads(TINY_MATRIX)
    raw["pretrain"]["variants"] = variants
    return build_plan(validate(raw, "m.toml"), "m.toml")


def test_bilstm_row_shares_the_pretraining_but_not_the_finetunes():
    plan = _plan(TABLE5_ROWS)
    assert len(plan.pretrain) == 1  # same objective: one pre-training trial
    ltr, bilstm = plan.rows
    assert ltr.pretrain_id == bilstm.pretrain_id
    assert ltr.head == ("linear", 0, None) and bilstm.head == ("bilstm", 0, None)
    assert len(plan.finetune) == 2 * 4  # 2 rows x (2 tasks x 1 grid point x 2 restarts)
    cells = {row.name: cell_trials(plan, row, "syn_agree") for row in plan.rows}
    assert len(cells["ltr"]) == len(cells["ltr_bilstm"]) == 2
    assert not {t.id for t in cells["ltr"]} & {t.id for t in cells["ltr_bilstm"]}
    assert all(t.config.head == "bilstm" for t in cells["ltr_bilstm"])


def test_unknown_head_override_is_an_error_with_its_key_path():
    bad = [{"name": "x", "finetune": {"head": "crf"}}]
    with pytest.raises(MatrixError, match=r"pretrain\.variants\[0\]\.finetune\.head: "):
        _plan(bad)
    typo = [{"name": "x", "finetune": {"heads": "bilstm"}}]
    with pytest.raises(MatrixError, match="did you mean 'head'"):
        _plan(typo)


def test_bilstm_classifier_over_a_causal_encoder(tmp_path: Path):
    torch.manual_seed(0)
    pretrain_cfg = {
        "objective": "ltr",
        "model": {
            "layers": 1,
            "hidden": 16,
            "heads": 2,
            "intermediate": 32,
            "dropout": 0.0,
            "max_position": 32,
        },
    }
    model_from(pretrain_cfg, vocab_size=40, pad_token_id=0).save_pretrained(tmp_path)
    model = BiLSTMClassifier.build(tmp_path, num_labels=3, bilstm_hidden=8).eval()
    assert model.config.is_decoder  # the encoder keeps its causal mask
    assert model.lstm.hidden_size == 8 and model.classifier.in_features == 16
    ids = torch.randint(5, 40, (2, 10))
    mask = torch.ones_like(ids)
    logits = model(input_ids=ids, attention_mask=mask).logits
    # right padding does not change the result: padding never enters the LSTM
    padded = torch.cat([ids, torch.zeros(2, 4, dtype=torch.long)], dim=1)
    padded_mask = torch.cat([mask, torch.zeros(2, 4, dtype=torch.long)], dim=1)
    assert torch.allclose(
        model(input_ids=padded, attention_mask=padded_mask).logits, logits, atol=1e-5
    )
    out = model(input_ids=ids, attention_mask=mask, labels=torch.tensor([0, 2]))
    out.loss.backward()
    assert model.lstm.weight_ih_l0.grad is not None


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
def test_bilstm_heads_run_their_lstm_in_fp32_under_autocast(tmp_path: Path, dtype):
    """Autocast would run the LSTM in the low precision; it stays fp32, and lengths counted on
    the host (what the collator gives) match the ones counted from the mask."""
    from bertabl.finetune.heads import BiLSTMQuestionAnswering

    torch.manual_seed(0)
    model_from(
        {"objective": "mlm_nsp", "model": {"layers": 1, "hidden": 16, "heads": 2} | TINY_MODEL},
        vocab_size=40,
        pad_token_id=0,
    ).save_pretrained(tmp_path)
    classifier = BiLSTMClassifier.build(tmp_path, num_labels=3, bilstm_hidden=8).eval()
    qa = BiLSTMQuestionAnswering.build(tmp_path, bilstm_hidden=8).eval()
    lstm_dtypes = set()
    for model in (classifier, qa):
        model.lstm.register_forward_hook(lambda m, a, out: lstm_dtypes.add(out[0].data.dtype))
    ids = torch.randint(5, 40, (2, 10))
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    exact = classifier(input_ids=ids, attention_mask=mask).logits
    with torch.autocast("cpu", dtype=dtype):
        counted = classifier(input_ids=ids, attention_mask=mask).logits
        given = classifier(input_ids=ids, attention_mask=mask, lengths=mask.sum(-1)).logits
        start = qa(input_ids=ids, attention_mask=mask, lengths=mask.sum(-1)).start_logits
    assert lstm_dtypes == {torch.float32}
    assert counted.dtype == dtype and torch.isfinite(start).all()
    torch.testing.assert_close(given, counted)
    torch.testing.assert_close(counted.float(), exact, rtol=0, atol=2e-2)


def test_bilstm_row_fine_tunes(tmp_path: Path):
    plan = _plan(TABLE5_ROWS)
    pretrain(plan.pretrain[0].config, tmp_path / "pt", TrialRuntime(torch.device("cpu")))
    trial = cell_trials(plan, plan.rows[1], "syn_chain")[0]
    metrics = finetune(
        trial.config, tmp_path / "pt" / "model", tmp_path / "ft", TrialRuntime(torch.device("cpu"))
    )
    assert 0.0 <= metrics["dev_accuracy"] <= 1.0


def _finetune_on_fixture(tmp_path: Path, task: str, data_key: str, fixture: str, names) -> dict:
    """Pre-train the tiny model, then fine-tune `task` on a fixture copied to `names`."""
    folder = fixture_copies(tmp_path / data_key, fixture, names)
    raw = tomllib.loads(TINY_MATRIX)
    raw["finetune"]["tasks"] = [task]
    raw["finetune"]["max_seq_len"] = 64
    raw["data"] = raw.get("data", {}) | {data_key: str(folder)}
    plan = build_plan(validate(raw, "m.toml"), "m.toml")
    pretrain(plan.pretrain[0].config, tmp_path / "pt", TrialRuntime(torch.device("cpu")))
    return finetune(
        plan.finetune[0].config,
        tmp_path / "pt" / "model",
        tmp_path / "ft",
        TrialRuntime(torch.device("cpu")),
    )


def test_squad_v2_fine_tunes_and_reports_official_metrics(tmp_path: Path):
    """Span QA with unanswerable questions, on the hand-written SQuAD 2.0 fixture (train = dev)."""
    metrics = _finetune_on_fixture(
        tmp_path,
        "squad_v2",
        "squad_dir",
        "squad/dev-v2.0-mini.json",
        ("train-v2.0.json", "dev-v2.0.json"),
    )
    assert 0.0 <= metrics["dev_exact_match"] <= metrics["dev_f1"] <= 1.0


def test_swag_multiple_choice_fine_tunes(tmp_path: Path):
    """SWAG's original CSV layout (the hand-written fixture as both train and val)."""
    metrics = _finetune_on_fixture(
        tmp_path, "swag", "swag_dir", "swag/val.csv", ("train.csv", "val.csv")
    )
    assert 0.0 <= metrics["dev_accuracy"] <= 1.0


def test_feature_based_ner_modes_share_one_cached_encoder_pass(shared_data: Path, tmp_path: Path):
    """Table 7's feature-based rows: frozen encoder (4 layers), cached features, BiLSTM tagger."""
    raw = tomllib.loads(TINY_MATRIX)
    raw["pretrain"]["model"]["layers"] = 4  # the last-four modes need four layers
    raw["pretrain"]["variants"] = [
        {"name": "fine_tuned"},
        {"name": "concat", "finetune": {"head": "features", "features": "concat_last_four"}},
        {"name": "mix_all", "finetune": {"head": "features", "features": "weighted_sum_all"}},
        {"name": "embed", "finetune": {"head": "features", "features": "embeddings"}},
    ]
    raw["finetune"]["tasks"] = ["conll2003"]
    raw["finetune"]["restarts"] = 1
    raw["data"] = raw.get("data", {}) | {
        "conll_dir": str(shared_data / "conll2003"),
        "tokenizer": str(shared_data / "vocab" / "bert-base-uncased-vocab.txt"),
        "tasks": {"conll2003": {"max_train_examples": 32, "max_dev_examples": 16}},
    }
    plan = build_plan(validate(raw, "m.toml"), "m.toml")
    assert len(plan.pretrain) == 1 and len(plan.finetune) == 4
    pt_dir = tmp_path / "pt"
    pretrain(plan.pretrain[0].config, pt_dir, TrialRuntime(torch.device("cpu")))
    cache = pt_dir / "feature-cache"
    for index, row in enumerate(plan.rows):
        trial = cell_trials(plan, row, "conll2003")[0]
        metrics = finetune(
            trial.config, pt_dir / "model", tmp_path / row.name, TrialRuntime(torch.device("cpu"))
        )
        assert 0.0 <= metrics["dev_f1"] <= 1.0
        if index == 1:
            cached = sorted(p.name for p in cache.iterdir())
    assert len(cached) == 2  # train and dev features, computed once
    assert sorted(p.name for p in cache.iterdir()) == cached  # the other modes reused them


def test_bilstm_head_on_squad(tmp_path: Path):
    """Table 5's '+ BiLSTM' row has a SQuAD cell: a BiLSTM under the start/end logits."""
    from bertabl.finetune.heads import BiLSTMQuestionAnswering

    torch.manual_seed(0)
    model_from(
        {
            "objective": "ltr",
            "model": {
                "layers": 1,
                "hidden": 16,
                "heads": 2,
                "intermediate": 32,
                "dropout": 0.0,
                "max_position": 32,
            },
        },
        vocab_size=40,
        pad_token_id=0,
    ).save_pretrained(tmp_path)
    model = BiLSTMQuestionAnswering.build(tmp_path, bilstm_hidden=8)
    ids = torch.randint(5, 40, (2, 10))
    out = model(
        input_ids=ids,
        attention_mask=torch.ones_like(ids),
        start_positions=torch.tensor([1, 2]),
        end_positions=torch.tensor([3, 4]),
    )
    assert out.start_logits.shape == (2, 10) and out.end_logits.shape == (2, 10)
    out.loss.backward()
    assert model.lstm.weight_ih_l0.grad is not None
