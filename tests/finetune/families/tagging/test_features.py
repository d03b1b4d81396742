"""Feature-based NER (Table 7): the six feature choices, the scalar mix, frozen and padding-free
hidden states, batches at word positions, the per-checkpoint cache, a tagger that learns."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from transformers import BertConfig, BertModel

from bertabl.finetune.families.tagging import encoding as ner
from bertabl.finetune.families.tagging import features as feat
from tests.finetune.families.tagging.test_encoding import EMMA, ID

HIDDEN, LAYERS = 32, 4


def _tiny_bert() -> BertModel:
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=25,
        hidden_size=HIDDEN,
        num_hidden_layers=LAYERS,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    return BertModel(config, add_pooling_layer=False)


SENTENCES = [
    EMMA,
    {"tokens": ["he", "visited", "Paris"], "tags": ["O", "O", "I-LOC"]},
    {"tokens": ["the", "man", "sits", "at", "London"], "tags": ["O"] * 4 + ["I-LOC"]},
]


@pytest.mark.parametrize(
    "mode,width",
    [
        ("embeddings", HIDDEN),
        ("second_to_last_hidden", HIDDEN),
        ("last_hidden", HIDDEN),
        ("weighted_sum_last_four", HIDDEN),
        ("concat_last_four", 4 * HIDDEN),
        ("weighted_sum_all", HIDDEN),
    ],
)
def test_feature_modes(mode: str, width: int) -> None:
    stack = torch.randn(2, LAYERS + 1, 7, HIDDEN)
    tagger = feat.FeatureTagger(mode, LAYERS, HIDDEN, lstm_hidden=8, num_labels=9)
    x = tagger.features(stack[:, tagger.layers])  # what collate batches for this mode
    assert x.shape == (2, 7, width) == (2, 7, feat.feature_width(mode, HIDDEN))
    # At init (equal weights, gamma 1) each mode is its closed form.
    expected = {
        "embeddings": stack[:, 0],
        "second_to_last_hidden": stack[:, -2],
        "last_hidden": stack[:, -1],
        "weighted_sum_last_four": stack[:, -4:].mean(1),
        "concat_last_four": torch.cat([stack[:, i] for i in (-4, -3, -2, -1)], dim=-1),
        "weighted_sum_all": stack[:, 1:].mean(1),  # 12 Transformer layers, not the embeddings
    }[mode]
    torch.testing.assert_close(x, expected)


def test_scalar_mix_closed_form() -> None:
    layers = torch.tensor([[[1.0, 2.0]], [[3.0, 6.0]], [[5.0, 1.0]]])  # [3 layers, 1, 2]
    mix = feat.ScalarMix(3)
    torch.testing.assert_close(mix(layers), torch.tensor([[3.0, 3.0]]))
    with torch.no_grad():  # weights ln(1), ln(2), ln(1) -> softmax 1/4, 1/2, 1/4; gamma 2
        mix.weights.copy_(torch.log(torch.tensor([1.0, 2.0, 1.0])))
        mix.gamma.fill_(2.0)
    torch.testing.assert_close(mix(layers), torch.tensor([[6.0, 7.5]]))
    with pytest.raises(ValueError, match="needs at least 4"):
        feat.FeatureTagger("concat_last_four", 2, HIDDEN, 8, 9)


def test_encoder_frozen_and_padding_free_states(tok) -> None:
    model = _tiny_bert()
    before = copy.deepcopy(model.state_dict())
    encoded = ner.encode(SENTENCES, tok, 32)
    states = feat.extract_hidden_states(model, encoded, batch_size=2)
    assert [s.shape for s in states] == [(LAYERS + 1, len(f["input_ids"]), HIDDEN) for f in encoded]
    assert not any(s.requires_grad for s in states)
    # Batched, padded states equal each sentence run alone.
    alone = feat.extract_hidden_states(model, encoded[1:2], batch_size=1)[0]
    torch.testing.assert_close(states[1], alone, atol=1e-5, rtol=1e-5)

    tagger = feat.FeatureTagger("weighted_sum_all", LAYERS, HIDDEN, 8, len(ner.LABELS))
    optimizer = torch.optim.Adam(tagger.parameters(), lr=1e-2)
    batch = feat.collate(encoded, states, tagger.layers)
    assert batch["hidden_states"].shape[1] == LAYERS  # the 4 layers the mode reads, of 5
    for _ in range(3):
        optimizer.zero_grad()
        feat.FeatureTagger.loss(
            tagger(batch["hidden_states"], batch["mask"], batch["first"]), batch["labels"]
        ).backward()
        optimizer.step()
    assert tagger.mix.weights.grad is not None
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(p.grad is None for p in model.parameters())


def test_collate_word_positions(tok) -> None:
    encoded = ner.encode(SENTENCES, tok, 6)  # truncates Emma's sentence after "lived"
    states = [torch.zeros(LAYERS + 1, len(f["input_ids"]), HIDDEN) for f in encoded]
    states = [s + torch.arange(LAYERS + 1.0).view(-1, 1, 1) for s in states]  # layer i holds i
    batch = feat.collate(encoded, states, [LAYERS, 1])
    assert batch["hidden_states"].shape == (3, 2, 6, HIDDEN)
    assert batch["hidden_states"][:, :, 0, 0].tolist() == [[LAYERS, 1.0]] * 3  # in that order
    assert batch["lengths"].tolist() == [6, 5, 6] and batch["lengths"].device.type == "cpu"
    assert batch["first"][0].tolist() == [1, 2, 4, -1, -1, -1]
    assert batch["labels"][0].tolist() == [ID["I-PER"], ID["I-PER"], 0] + [ner.IGNORE] * 3
    assert batch["first"][1].tolist() == [1, 2, 3, -1, -1, -1]  # padding words
    assert batch["mask"].sum(1).tolist() == [6, 5, 6]
    tagger = feat.FeatureTagger("last_hidden", LAYERS, HIDDEN, 8, len(ner.LABELS))
    with pytest.raises(ValueError, match=r"reads hidden-state layers \[4\]: expected 1"):
        tagger(batch["hidden_states"], batch["mask"], batch["first"])
    batch = feat.collate(encoded, states, tagger.layers)
    logits = tagger(batch["hidden_states"], batch["mask"], batch["first"], batch["lengths"])
    counted = tagger(batch["hidden_states"], batch["mask"], batch["first"])  # lengths from the mask
    torch.testing.assert_close(logits, counted)
    assert logits.shape == (3, 6, len(ner.LABELS)) and not logits[0, 3:].any()
    tags = feat.predict_tags(logits, batch["first"], encoded)
    assert [len(t) for t in tags] == [6, 3, 5] and tags[0][3:] == ["O"] * 3


def test_cache_skips_the_encoder_second_time(tok, tmp_path: Path) -> None:
    model_dir = tmp_path / "ckpt"
    _tiny_bert().save_pretrained(model_dir)
    calls = {"forward": 0}

    def load(path: Path) -> BertModel:
        model = BertModel.from_pretrained(path, add_pooling_layer=False)
        original = model.forward

        def counted(*args, **kwargs):
            calls["forward"] += 1
            return original(*args, **kwargs)

        model.forward = counted
        return model

    encoded = ner.encode(SENTENCES, tok, 32)
    first = feat.cached_hidden_states(model_dir, encoded, tmp_path / "cache", 2, load_model=load)
    assert calls["forward"] == 2  # 3 sentences, batch size 2
    second = feat.cached_hidden_states(model_dir, encoded, tmp_path / "cache", 2, load_model=load)
    assert calls["forward"] == 2
    assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))
    feat.cached_hidden_states(model_dir, encoded[:2], tmp_path / "cache", 2, load_model=load)
    assert calls["forward"] == 3  # other data: another key
    assert len(list((tmp_path / "cache").glob("*.pt"))) == 2
    # A cache kept inside the checkpoint folder, or tokenizer files, do not change the key...
    tok.save_pretrained(model_dir)
    feat.cached_hidden_states(model_dir, encoded, model_dir / "cache", 2, load_model=load)
    feat.cached_hidden_states(model_dir, encoded, model_dir / "cache", 2, load_model=load)
    assert calls["forward"] == 5
    # ...new weights do.
    torch.manual_seed(1)
    BertModel(_tiny_bert().config, add_pooling_layer=False).save_pretrained(model_dir)
    feat.cached_hidden_states(model_dir, encoded, tmp_path / "cache", 2, load_model=load)
    assert calls["forward"] == 7


def test_tagger_learns_a_synthetic_problem() -> None:
    # The label of a token is which of 3 directions its last-layer state points along most.
    torch.manual_seed(0)
    stack = torch.randn(16, LAYERS + 1, 10, HIDDEN)
    labels = stack[:, -1, :, :3].argmax(-1)
    mask = torch.ones(16, 10, dtype=torch.long)
    first = torch.arange(10).expand(16, 10)
    tagger = feat.FeatureTagger("weighted_sum_last_four", LAYERS, HIDDEN, 16, 3)
    optimizer = torch.optim.Adam(tagger.parameters(), lr=1e-2)
    losses = []
    for _ in range(40):
        optimizer.zero_grad()
        loss = feat.FeatureTagger.loss(tagger(stack[:, tagger.layers], mask, first), labels)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
