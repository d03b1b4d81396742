"""The held-out pass decodes the vocabulary at the predicted positions only, in chunks: the
numbers of the dense computation it replaced (every position's logits, the unlabelled ignored)
to float32 rounding, never a [positions, vocabulary] matrix of the whole batch."""

from __future__ import annotations

import contextlib

import pytest
import torch

from bertabl.pretrain import model as lm
from bertabl.pretrain.objectives import OBJECTIVES
from bertabl.pretrain.objectives.ltr import next_token_labels
from bertabl.pretrain.perplexity import heldout_metrics, perplexity
from bertabl.training import IGNORE_INDEX as IGNORE
from tests.conftest import model_from

VOCAB, PAD, WIDTH, ROWS = 50, 0, 16, 4
CPU = torch.device("cpu")
# The dense pass summed a batch's token losses in float32 (rounding at ~1e-7); the vocabulary
# projection of fewer rows may round differently in the last bit: measured differences ~1e-7.
REL = 1e-6


def _model(objective: str) -> torch.nn.Module:
    torch.manual_seed(0)
    model = {"layers": 2, "hidden": 32, "heads": 2, "intermediate": 64, "dropout": 0.1}
    return model_from({"objective": objective, "model": model | {"max_position": 32}}, VOCAB, PAD)


def _batches(objective: str, count: int = 3) -> list[dict[str, torch.Tensor]]:
    """Collated-like held-out batches: right-padded pairs, ~15% of the real tokens masked (LTR:
    every next token), one batch's last row without any predicted token."""
    gen = torch.Generator().manual_seed(1)
    batches = []
    for index in range(count):
        lengths = torch.randint(WIDTH // 2, WIDTH + 1, (ROWS,), generator=gen)
        real = torch.arange(WIDTH)[None, :] < lengths[:, None]
        ids = torch.randint(5, VOCAB, (ROWS, WIDTH), generator=gen) * real
        if OBJECTIVES[objective].masks:
            chosen = (torch.rand(ROWS, WIDTH, generator=gen) < 0.15) & real
            chosen[0, 1] = True
            if index == 0:
                chosen[-1] = False
            labels = torch.where(chosen, ids, IGNORE)
        else:
            labels = next_token_labels(torch.where(real, ids, IGNORE))
        second = torch.arange(WIDTH)[None, :] >= lengths[:, None] // 2
        batches.append(
            {
                "input_ids": ids,
                "attention_mask": real.long(),
                "token_type_ids": (second & real).long(),
                "labels": labels,
                "next_sentence_label": torch.randint(0, 2, (ROWS,), generator=gen),
            }
        )
    return batches


@torch.no_grad()
def _dense(model: torch.nn.Module, batches: list[dict], nsp: bool) -> dict[str, float]:
    """The held-out metrics from the model's dense logits (bertabl's pass before it decoded
    the predicted positions only)."""
    model.eval()
    nll, tokens, hits, pairs = 0.0, 0, 0, 0
    for batch in batches:
        inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids")}
        out = model(**inputs)
        logits = out.prediction_logits if nsp else out.logits
        assert logits.shape == (ROWS, WIDTH, VOCAB)  # every position decoded
        nll += torch.nn.functional.cross_entropy(
            logits.float().flatten(0, 1),
            batch["labels"].flatten(),
            ignore_index=IGNORE,
            reduction="sum",
        ).item()
        tokens += int((batch["labels"] != IGNORE).sum())
        if nsp:
            labels = batch["next_sentence_label"]
            hits += int((out.seq_relationship_logits.argmax(-1) == labels).sum())
            pairs += len(labels)
    metrics = {"loss": nll / tokens, "perplexity": perplexity(nll, tokens), "tokens": tokens}
    return metrics | ({"nsp_acc": hits / pairs} if pairs else {})


def _assert_same(got: dict[str, float], dense: dict[str, float]) -> None:
    assert got.keys() == {f"heldout_{k}" for k in dense}
    assert got["heldout_tokens"] == dense["tokens"]
    assert got["heldout_loss"] == pytest.approx(dense["loss"], rel=REL)
    assert got["heldout_perplexity"] == pytest.approx(dense["perplexity"], rel=REL)
    if "nsp_acc" in dense:
        assert got["heldout_nsp_acc"] == dense["nsp_acc"]


def _heldout(model, batches, objective) -> dict[str, float]:
    return heldout_metrics(model, batches, objective, CPU, contextlib.nullcontext)


@pytest.mark.parametrize("objective", ["mlm_nsp", "mlm", "ltr"])
def test_the_heldout_pass_gives_the_dense_numbers(objective: str):
    model, batches = _model(objective), _batches(objective)
    got = _heldout(model.train(), batches, objective)  # scored in eval mode (no dropout) ...
    assert model.training  # ... and left as it was
    dense = _dense(model, batches, OBJECTIVES[objective].nsp)
    _assert_same(got, dense)
    assert got["heldout_tokens"] == sum(int((b["labels"] != IGNORE).sum()) for b in batches)
    assert ("heldout_nsp_acc" in got) == (objective == "mlm_nsp")


@pytest.mark.parametrize("objective", ["mlm", "ltr"])
def test_the_lm_head_sees_the_predicted_positions_only_in_chunks(monkeypatch, objective: str):
    """With chunks of 7 positions: the LM head never decodes more than 7 rows at once, decodes
    each predicted position exactly once and nothing else, and the numbers stay the dense ones."""
    model, batches = _model(objective), _batches(objective)
    dense = _dense(model, batches, nsp=False)
    monkeypatch.setattr(lm, "DENSE_LOGITS_LIMIT", 7 * VOCAB)
    decoded: list[int] = []
    head = model.cls.predictions
    hook = head.register_forward_hook(lambda _module, args, _out: decoded.append(len(args[0])))
    got = _heldout(model, batches, objective)
    hook.remove()
    _assert_same(got, dense)
    assert max(decoded) == 7 and sum(decoded) == got["heldout_tokens"]
    assert got["heldout_tokens"] < len(batches) * ROWS * WIDTH  # not every position


def test_no_predicted_token_gives_no_metrics():
    batches = _batches("mlm", count=1)
    batches[0]["labels"] = torch.full_like(batches[0]["labels"], IGNORE)
    assert _heldout(_model("mlm"), batches, "mlm") == {}
