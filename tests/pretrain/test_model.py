"""Masked-LM decoding at masked positions only: same loss and gradients as HF's dense model."""

from __future__ import annotations

import pytest
import torch

from bertabl.parallel import Group
from bertabl.pretrain.model import DENSE_LOGITS_LIMIT, ChunkedLeftToRightLM, MaskedPositionsLM
from bertabl.pretrain.objectives import OBJECTIVES
from bertabl.pretrain.step_loop import IGNORE, _accumulate_gradients
from bertabl.training import Precision
from bertabl.trial.layout import batch_layout
from tests.conftest import model_from

VOCAB, PAD = 50, 0


def _pretrain(objective: str) -> dict:
    model = {"layers": 1, "hidden": 32, "heads": 2, "intermediate": 64, "dropout": 0.0}
    return {"objective": objective, "model": model | {"max_position": 32}}


def _batch(size: int = 4, length: int = 12) -> dict[str, torch.Tensor]:
    """Padded pairs with ~15% of the real tokens labelled, one row with no masked token."""
    gen = torch.Generator().manual_seed(0)
    input_ids = torch.randint(1, VOCAB, (size, length), generator=gen)
    lengths = torch.tensor([length, length - 3, length - 5, 6])[:size]
    attention = (torch.arange(length)[None, :] < lengths[:, None]).long()
    input_ids = input_ids * attention
    token_type_ids = (torch.arange(length)[None, :] >= lengths[:, None] // 2).long() * attention
    chosen = (torch.rand(size, length, generator=gen) < 0.3) & attention.bool()
    chosen[-1] = False  # a row (micro-batch) without masked tokens must add 0, not NaN
    chosen[0, 1] = True
    labels = torch.where(chosen, torch.randint(1, VOCAB, (size, length), generator=gen), IGNORE)
    return {
        "input_ids": input_ids,
        "attention_mask": attention,
        "token_type_ids": token_type_ids,
        "labels": labels,
        "next_sentence_label": torch.tensor([0, 1, 1, 0])[:size],
    }


def _grads(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("objective", ["mlm_nsp", "mlm"])
@pytest.mark.parametrize("micro", [0, 1])
def test_sparse_loss_and_gradients_equal_the_dense_hf_model(objective: str, micro: int):
    torch.manual_seed(0)
    model = model_from(_pretrain(objective), VOCAB, PAD)
    batch = _batch()
    with_nsp = objective == "mlm_nsp"
    inputs = {k: v for k, v in batch.items() if with_nsp or k != "next_sentence_label"}

    dense = model(**inputs).loss  # HF: mean over masked tokens (+ NSP mean over sequences)
    dense.backward()
    expected = _grads(model)
    model.zero_grad(set_to_none=True)

    cpu = torch.device("cpu")
    layout = batch_layout(len(batch["input_ids"]), 1, micro)
    micro_batches = [{k: v[part] for k, v in batch.items()} for part in layout.rows(0)]
    for m in micro_batches:  # what batches.collate adds for the sparse decoder
        m["masked_positions"] = (m["labels"].flatten() != IGNORE).nonzero().squeeze(1)
    masked = int((batch["labels"] != IGNORE).sum())
    mlm, nsp, _ = _accumulate_gradients(
        MaskedPositionsLM(model),
        micro_batches,
        masked,
        layout,
        Group(0, 1, cpu),
        with_nsp,
        Precision(cpu),
    )
    assert mlm + nsp == pytest.approx(dense.item(), abs=1e-5)
    got = _grads(model)
    assert got.keys() == expected.keys()
    for name, grad in expected.items():
        torch.testing.assert_close(got[name], grad, atol=1e-5, rtol=1e-4, msg=name)


def test_sparse_logits_are_the_dense_logits_at_masked_positions():
    torch.manual_seed(0)
    model = model_from(_pretrain("mlm_nsp"), VOCAB, PAD).eval()
    batch = _batch()
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids")}
    positions = (batch["labels"].flatten() != IGNORE).nonzero().squeeze(1)
    mlm, nsp = MaskedPositionsLM(model)(**inputs, masked_positions=positions)
    out = model(**inputs)
    torch.testing.assert_close(mlm, out.prediction_logits.flatten(0, 1)[positions])
    torch.testing.assert_close(nsp, out.seq_relationship_logits)
    assert mlm.shape == (int((batch["labels"] != IGNORE).sum()), VOCAB)


# --- LTR at scale: the loss in checkpointed chunks ----------------------------------------------


def _ltr_batch() -> dict[str, torch.Tensor]:
    from bertabl.pretrain.objectives.ltr import next_token_labels

    batch = {k: v for k, v in _batch().items() if k != "next_sentence_label"}
    labels = torch.where(batch["attention_mask"].bool(), batch["input_ids"], IGNORE)
    return batch | {"labels": next_token_labels(labels)}


@pytest.mark.parametrize("micro", [0, 2])
def test_chunked_ltr_loss_and_gradients_equal_the_dense_model(micro: int):
    """5-position chunks (of 28 predicted positions): same loss and gradients as the dense
    logits over every position, with and without micro-batches."""
    torch.manual_seed(0)
    model = model_from(_pretrain("ltr"), VOCAB, PAD)
    batch = _ltr_batch()
    cpu, layout = torch.device("cpu"), batch_layout(len(batch["input_ids"]), 1, micro)
    group = Group(0, 1, cpu)
    micro_batches = [{k: v[part] for k, v in batch.items()} for part in layout.rows(0)]
    masked = int((batch["labels"] != IGNORE).sum())

    def run(net) -> float:
        loss, _, _ = _accumulate_gradients(
            net, micro_batches, masked, layout, group, False, Precision(cpu)
        )
        return loss

    dense = run(model)
    expected = _grads(model)
    model.zero_grad(set_to_none=True)
    chunked = run(ChunkedLeftToRightLM(model, chunk_rows=5))
    assert chunked == pytest.approx(dense, abs=1e-6)
    got = _grads(model)
    assert got.keys() == expected.keys()
    for name, grad in expected.items():
        torch.testing.assert_close(got[name], grad, atol=1e-6, rtol=1e-5, msg=name)


def test_ltr_logits_are_chunked_only_past_the_limit(monkeypatch):
    import bertabl.pretrain.model as model_module

    torch.manual_seed(0)
    ltr = model_from(_pretrain("ltr"), VOCAB, PAD)
    mlm = model_from(_pretrain("mlm"), VOCAB, PAD)
    assert isinstance(OBJECTIVES["mlm"].training_module(mlm, 10**9), MaskedPositionsLM)
    assert OBJECTIVES["ltr"].training_module(ltr, DENSE_LOGITS_LIMIT // VOCAB) is ltr  # dense
    monkeypatch.setattr(model_module, "DENSE_LOGITS_LIMIT", 10 * VOCAB)
    chunked = OBJECTIVES["ltr"].training_module(ltr, 11)
    assert isinstance(chunked, ChunkedLeftToRightLM) and chunked.chunk_rows == 10
    # paper scale: 256 sequences x 512 positions x BERT's 30,522 words would be 16 GB in fp32
    assert 256 * 512 * 30522 > DENSE_LOGITS_LIMIT >= 32 * 128 * 30522  # budget vs CPU presets
