"""Compact word embeddings (finetune/vocab.py): fine-tuning only the rows the data can read
computes what the full embedding computes."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

from bertabl.data import synthetic
from bertabl.finetune import epoch_loop as finetune_train
from bertabl.finetune.recipe import Tuning
from bertabl.finetune.vocab import (
    CompactEmbedding,
    checked_collate,
    compact_word_embeddings,
    token_ids,
)
from bertabl.matrix import build_plan
from bertabl.matrix.load import tomllib, validate
from bertabl.orchestrate.checkpoint import Checkpointer
from bertabl.training import Precision, TrialRuntime
from bertabl.trial.finetune import Recipe
from tests.conftest import TINY_MATRIX, KillAfter, Killed, model_from

CPU = torch.device("cpu")

VOCAB, PAD = 60, 0
USED = [0, 1, 2, 5, 7, 11, 13, 17, 19, 23, 29, 31]  # [PAD] and the ids the data holds


def _model() -> BertForSequenceClassification:
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=VOCAB,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=32,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        pad_token_id=PAD,
    )
    return BertForSequenceClassification(config)


def _batches(steps: int) -> list[dict[str, torch.Tensor]]:
    """Padded batches of ids from USED (the padding row is read but gets no gradient)."""
    gen = torch.Generator().manual_seed(1)
    used = torch.tensor(USED[1:])
    batches = []
    for _ in range(steps):
        ids = used[torch.randint(len(used), (8, 10), generator=gen)]
        lengths = torch.randint(3, 11, (8,), generator=gen)
        mask = (torch.arange(10)[None, :] < lengths[:, None]).long()
        labels = torch.randint(2, (8,), generator=gen)
        batches.append({"input_ids": ids * mask, "attention_mask": mask, "labels": labels})
    return batches


def _train(model, batches) -> list[float]:
    """BERT's recipe (weight decay, clipping, fused AdamW, warmup) through Tuning."""
    config = SimpleNamespace(learning_rate=1e-2, weight_decay=0.1, warmup_fraction=0.2)
    config.recipe = Recipe()
    tuning = Tuning(model, config, len(batches))
    losses = []
    for batch in batches:
        losses.append(
            tuning.step([batch], lambda items: dict(items[0]), Precision(model.device), "t")
        )
    return losses


def test_training_on_kept_rows_equals_training_the_full_embedding():
    full, compact = _model(), _model()
    assert compact_word_embeddings(compact, set(USED[1:])) == len(USED)  # + [PAD]
    batches = _batches(12)
    full_losses, compact_losses = _train(full, batches), _train(compact, batches)
    assert compact_losses == pytest.approx(full_losses, abs=1e-6)
    kept = torch.tensor(USED)
    full_rows = full.bert.embeddings.word_embeddings.weight[kept]
    torch.testing.assert_close(
        compact.bert.embeddings.word_embeddings.weight, full_rows, atol=1e-6, rtol=0
    )
    full_rest = {k: v for k, v in full.state_dict().items() if "word_embeddings" not in k}
    compact_rest = {k: v for k, v in compact.state_dict().items() if "word_embeddings" not in k}
    torch.testing.assert_close(compact_rest, full_rest, atol=1e-6, rtol=0)
    with torch.no_grad():
        full.eval(), compact.eval()
        inputs = {k: v for k, v in batches[0].items() if k != "labels"}
        torch.testing.assert_close(compact(**inputs).logits, full(**inputs).logits)


def test_padding_row_gets_no_gradient_and_lookup_is_by_vocabulary_id():
    model = _model()
    full = copy.deepcopy(model.bert.embeddings.word_embeddings)
    compact_word_embeddings(model, {5, 7})
    embedding = model.bert.embeddings.word_embeddings
    assert isinstance(embedding, CompactEmbedding)
    ids = torch.tensor([[5, 7, 0, 0]])
    torch.testing.assert_close(embedding(ids), full(ids))
    embedding(ids).sum().backward()
    assert embedding.weight.grad[embedding.padding_idx].abs().sum() == 0
    assert embedding.weight.grad[embedding.lookup[5]].abs().sum() > 0
    assert "lookup" not in model.state_dict().keys() and embedding.weight.shape == (3, 16)


def test_nothing_is_compacted_when_the_data_reads_the_whole_vocabulary():
    model = _model()
    assert compact_word_embeddings(model, set(range(VOCAB))) == 0
    assert isinstance(model.bert.embeddings.word_embeddings, torch.nn.Embedding)


@pytest.mark.parametrize("compacted", [True, False])
def test_ids_the_embedding_cannot_read_fail_on_the_host(compacted: bool):
    """On a GPU an unreadable id is a device-side assert that leaves the CUDA context (and the
    reused Tune worker) unusable; the collator's check fails first, naming the id."""
    model = _model()
    if compacted:
        compact_word_embeddings(model, {5, 7})
    batch = {"input_ids": torch.tensor([[5, 7, 0]]), "attention_mask": torch.ones(1, 3)}
    collate = checked_collate(lambda items: dict(batch), model)
    assert collate([]) == batch  # readable ids pass unchanged
    bad = 11 if compacted else VOCAB  # not kept / past the vocabulary
    batch["input_ids"] = torch.tensor([[5, bad, 0]])
    with pytest.raises(RuntimeError, match=f"token id {bad} in a batch is not a row"):
        collate([])
    batch["input_ids"] = torch.tensor([[-1, 5]])
    with pytest.raises(RuntimeError, match="token id -1"):
        collate([])


def test_token_ids_read_flat_and_per_candidate_examples():
    items = [{"input_ids": [1, 2, 3]}, {"input_ids": [[4, 5], [5, 6]]}, {"input_ids": []}]
    assert token_ids(items) == {1, 2, 3, 4, 5, 6}


def test_a_fine_tuning_trial_compacts_and_scores_as_without(encoder_with_spare_vocab, monkeypatch):
    """The trial body end to end: the same losses and dev scores with the compact embedding."""
    pretrained, config = encoder_with_spare_vocab
    kept = []
    compact = finetune_train.compact_word_embeddings

    def spy(model, ids):
        kept.append(compact(model, ids))
        return kept[-1]

    monkeypatch.setattr(finetune_train, "compact_word_embeddings", spy)
    with_compact = _run(config, pretrained)
    assert 0 < kept[0] < VOCAB_SPARE
    monkeypatch.setattr(finetune_train, "compact_word_embeddings", lambda model, ids: 0)
    without = _run(config, pretrained)
    assert with_compact["train_loss"] == pytest.approx(without["train_loss"], abs=1e-5)
    assert with_compact["dev_accuracy"] == without["dev_accuracy"]


VOCAB_SPARE = 200


@pytest.fixture
def encoder_with_spare_vocab(tmp_path):
    """The synthetic suite's vocabulary plus words no example uses, and a tiny random-init
    encoder over it; the trial config of TINY_MATRIX's first syn_agree fine-tune."""
    words = [*synthetic.lexicon().vocab()]
    words += [f"unusedword{i}" for i in range(VOCAB_SPARE - len(words))]
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(words) + "\n", encoding="utf-8")
    tokenizer = BertTokenizerFast(vocab=str(vocab), do_lower_case=True)
    pretrained = tmp_path / "pretrained"
    torch.manual_seed(0)
    model = {"layers": 1, "hidden": 16, "heads": 2, "intermediate": 32, "max_position": 64}
    encoder = model_from(
        {"objective": "mlm_nsp", "model": model | {"dropout": 0.0}},
        vocab_size=len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
    )
    encoder.save_pretrained(pretrained)
    tokenizer.save_pretrained(pretrained)
    plan = build_plan(validate(tomllib.loads(TINY_MATRIX), "m.toml"), "m.toml")
    trial = next(t for t in plan.finetune if t.task == "syn_agree")
    return pretrained, trial.config


def _run(config, pretrained):
    return finetune_train.finetune(config, pretrained, pretrained.parent, TrialRuntime(CPU))


@pytest.mark.parametrize("recipe", [{}, {"freeze_embeddings": True, "unfreeze_every": 1}])
def test_a_killed_trial_resumes_to_the_same_result_with_the_compact_embedding(
    encoder_with_spare_vocab, tmp_path, recipe
):
    pretrained, config = encoder_with_spare_vocab
    config = config.model_copy(update={"epochs": 2, "recipe": Recipe.model_validate(recipe)})
    straight = _run(config, pretrained)
    ckpt = tmp_path / "ckpt"
    with pytest.raises(Killed):
        killed = TrialRuntime(CPU, checkpoints=KillAfter(ckpt, at_step=3), checkpoint_every=3)
        finetune_train.finetune(config, pretrained, tmp_path, killed)
    runtime = TrialRuntime(CPU, checkpoints=Checkpointer(ckpt), checkpoint_every=3)
    assert finetune_train.finetune(config, pretrained, tmp_path, runtime) == straight
    assert runtime.resumed_from == 3


def test_a_checkpoint_of_the_full_embedding_starts_the_trial_over(
    encoder_with_spare_vocab, tmp_path, monkeypatch
):
    """A checkpoint written before compaction (full-size embedding) does not fit: the trial
    warns and starts over, with the uninterrupted result (no half-loaded weights)."""
    pretrained, config = encoder_with_spare_vocab
    straight = _run(config, pretrained)
    ckpt = tmp_path / "ckpt"
    with monkeypatch.context() as old_version:
        old_version.setattr(finetune_train, "compact_word_embeddings", lambda model, ids: 0)
        with pytest.raises(Killed):
            killed = TrialRuntime(CPU, checkpoints=KillAfter(ckpt, at_step=2), checkpoint_every=2)
            finetune_train.finetune(config, pretrained, tmp_path, killed)
    runtime = TrialRuntime(CPU, checkpoints=Checkpointer(ckpt), checkpoint_every=2)
    with pytest.warns(RuntimeWarning, match=r"word_embeddings.weight: \(200, 16\) saved vs"):
        assert finetune_train.finetune(config, pretrained, tmp_path, runtime) == straight
    assert runtime.resumed_from is None


def test_a_fine_tuning_trial_checks_its_batches_on_the_host(encoder_with_spare_vocab, monkeypatch):
    from bertabl.finetune.families.classification import Classification

    pretrained, config = encoder_with_spare_vocab
    collate = Classification.collate

    def corrupt(self, items):  # a collator bug: an id no example holds ("unusedword...")
        batch = collate(self, items)
        batch["input_ids"][0, 1] = VOCAB_SPARE - 1
        return batch

    monkeypatch.setattr(Classification, "collate", corrupt)
    with pytest.raises(RuntimeError, match=f"token id {VOCAB_SPARE - 1} in a batch is not a row"):
        _run(config, pretrained)
