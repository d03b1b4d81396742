"""The tagging family's adapters on CoNLL-format files: a model that tags every word right scores
entity F1 1.0 and writes the gold tags back; Table 7's feature-based tagger batches sentence
indices over frozen hidden states computed once."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from transformers import BertConfig, BertModel, BertTokenizerFast

from bertabl.finetune.families.tagging import FeatureTagging, Tagging
from bertabl.finetune.families.tagging import encoding as ner
from bertabl.finetune.heads import FeatureTaggingHead
from bertabl.matrix import build_plan
from bertabl.matrix.load import tomllib, validate
from bertabl.tasks.catalogue import spec_of
from bertabl.training import Precision, TrialRuntime
from tests.conftest import FIXTURES, TINY_MATRIX

CPU = torch.device("cpu")
VOCAB = FIXTURES / "ner" / "vocab.txt"


def _config(**finetune):
    raw = tomllib.loads(TINY_MATRIX)
    raw["data"] |= {"conll_dir": str(FIXTURES / "report" / "conll"), "tokenizer": str(VOCAB)}
    raw["finetune"] |= {"tasks": ["conll2003"], "max_seq_len": 64, "restarts": 1} | finetune
    return build_plan(validate(raw, "m.toml")).finetune[0].config


@pytest.fixture(scope="module")
def encoder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("encoder")
    torch.manual_seed(0)
    config = BertConfig(vocab_size=25, hidden_size=16, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=32)  # fmt: skip
    BertModel(config, add_pooling_layer=False).save_pretrained(folder)
    return folder


def _family(kind, config, folder):
    tokenizer = BertTokenizerFast(vocab=str(VOCAB), do_lower_case=True)
    spec = spec_of("conll2003", config.task_data)
    return kind(spec, config, config.task_data, tokenizer, folder, TrialRuntime(CPU))


class Oracle(torch.nn.Module):
    """Gives every token its gold label: looks each sequence's labels up by its input ids."""

    def __init__(self, encoded: list[dict]):
        super().__init__()
        self.gold = {tuple(f["input_ids"]): f["labels"] for f in encoded}

    def forward(self, input_ids, attention_mask, **_):
        rows = []
        for ids, mask in zip(input_ids.tolist(), attention_mask.tolist(), strict=True):
            labels = self.gold[tuple(ids[: sum(mask)])] + [0] * (len(ids) - sum(mask))
            rows.append([max(label, 0) for label in labels])  # -100 (not a first piece): any
        logits = torch.nn.functional.one_hot(torch.tensor(rows), len(ner.LABELS)).float()
        return SimpleNamespace(logits=logits)


def test_a_tagger_that_is_right_scores_one_and_writes_the_gold_tags(encoder):
    data = _family(Tagging, _config(), encoder)
    dev = data.encoded["dev"]
    assert len(dev) == len(data.raw["dev"]) and data.train == data.encoded["train"]
    scored = data.evaluate(Oracle(dev), "dev", Precision(CPU))
    assert scored.metrics == {"precision": 1.0, "recall": 1.0, "f1": 1.0}
    gold = list(data.raw["dev"]["tags"])  # the files' IOB1 ...
    iob1 = [ner.in_scheme(tags, "iob1") for tags in gold]  # ... as the trial trains on them
    assert [line["tags"] for line in scored.predictions] == iob1
    assert [line["gold"] for line in scored.predictions] == gold
    assert [line["index"] for line in scored.predictions] == list(range(len(gold)))


def test_a_tagger_that_says_o_everywhere_finds_no_entity(encoder):
    data = _family(Tagging, _config(), encoder)
    silent = Oracle([f | {"labels": [0] * len(f["labels"])} for f in data.encoded["dev"]])
    scored = data.evaluate(silent, "dev", Precision(CPU))
    assert scored.metrics == {"precision": 0.0, "recall": 0.0, "f1": 0.0}
    assert all(set(line["tags"]) == {"O"} for line in scored.predictions)


def test_the_feature_tagger_batches_sentence_indices_over_frozen_states(encoder):
    config = _config(head="features", features="second_to_last_hidden")
    data = _family(FeatureTagging, config, encoder)
    train = data.encoded["train"]
    assert data.train == list(range(len(train)))  # the items are indices into the states
    assert data.lengths == [len(f["input_ids"]) for f in train]
    assert data.layers == [1]  # of 2 layers: hidden_states[1], the second-to-last
    assert [s.shape for s in data.states["train"][:2]] == [
        (3, len(f["input_ids"]), 16)
        for f in train[:2]  # embeddings + 2 layers, each token
    ]
    # computed once per split beside the model (no run: no run cache), shared by every variant
    assert len(list((encoder.parent / "feature-cache").glob("*.pt"))) == 2  # train, dev
    batch = data.collate([1, 0])
    assert batch["hidden_states"].shape[:2] == (2, 1)
    assert torch.equal(batch["hidden_states"][0, 0, : len(train[1]["input_ids"])],
                       data.states["train"][1][1])  # fmt: skip
    assert data.readable() is None  # no word embeddings train
    model = data.build_model()
    assert isinstance(model, FeatureTaggingHead)
    scored = data.evaluate(model, "dev", Precision(CPU))
    assert 0.0 <= scored.metrics["f1"] <= 1.0 and len(scored.predictions) == len(data.raw["dev"])
