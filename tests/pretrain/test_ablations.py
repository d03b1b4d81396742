"""Issue 4's pre-training axes: masking mixes and whole words, held-out perplexity, the
sequence-length schedule, trained vocabularies, corpora (WikiText, Hub), the tokenised-corpus
cache, scale presets and per-matrix scales."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from bertabl.data import synthetic
from bertabl.data.corpus import corpus_data, load_corpus
from bertabl.data.token_store import TokenStore
from bertabl.data.tokenizer import build_tokenizer
from bertabl.errors import DataError, MatrixError
from bertabl.matrix import build_plan, load_matrix
from bertabl.matrix.presets import PAPER
from bertabl.matrix.schema import DataSection
from bertabl.pretrain.batches import collate, encode_rows
from bertabl.pretrain.masking import Masker
from bertabl.pretrain.pairs import PairStream
from bertabl.pretrain.perplexity import heldout_metrics, perplexity, split_heldout
from bertabl.trial.data import DataRef
from bertabl.trial.pretrain import MaskingConfig, SeqLenPhase, seq_len_phases
from tests.conftest import TINY_MATRIX

TRAINED = DataRef(
    identity={"tokenizer": {"trained": "wordpiece", "lowercase": True}, "corpus": "x"},
    location={"tokenizer": None},
)


def _small_vocab_tokenizer():
    """A WordPiece vocabulary trained on the synthetic corpus, small enough that most words
    split into a start piece and ## continuations."""
    corpus = synthetic.generate_corpus(seed=0, documents=400, sentences_per_document=8)
    return build_tokenizer(TRAINED, Path("unused"), vocab_size=70, documents=corpus), corpus


def _pair_batches(tokenizer, corpus, passes: int, size: int = 64):
    """(rows, keys) of `passes` passes of NSP pairs of `corpus`, in batches of `size`."""
    docs = [tokenizer(doc, add_special_tokens=False)["input_ids"] for doc in corpus]
    store = TokenStore.from_documents(docs)
    ids = (tokenizer.cls_token_id, tokenizer.sep_token_id)
    stream = PairStream(store, np.arange(store.n_documents), 64, "stats", *ids)
    for pass_index in range(passes):
        for block in range(stream.blocks(pass_index)):
            rows, keys = stream.block(pass_index, block)
            for start in range(0, len(rows), size):
                yield store.tokens, rows[start : start + size], keys[start : start + size]


def _mask_statistics(masker, tokenizer, corpus, passes: int = 4):
    ids = (tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id)
    stats = dict.fromkeys(("ordinary", "selected", "masked", "kept", "replaced"), 0)
    words = whole = 0
    continuation = torch.tensor(
        [t.startswith("##") for t, _ in sorted(tokenizer.get_vocab().items(), key=lambda x: x[1])]
    )
    for tokens, rows, keys in _pair_batches(tokenizer, corpus, passes):
        originals = torch.from_numpy(encode_rows(tokens, rows, *ids)["input_ids"])
        batch = collate(tokens, rows, keys, ids, masker, "mlm")
        chosen = batch["labels"] != -100
        special = torch.isin(originals, torch.tensor(tokenizer.all_special_ids))
        assert not (chosen & special).any()  # [CLS]/[SEP]/[PAD] are never selected
        assert (batch["labels"][chosen] == originals[chosen]).all()
        now = batch["input_ids"][chosen]
        stats["ordinary"] += int((~special).sum())
        stats["selected"] += int(chosen.sum())
        stats["masked"] += int((now == tokenizer.mask_token_id).sum())
        stats["kept"] += int((now == originals[chosen]).sum())
        stats["replaced"] += int(
            ((now != originals[chosen]) & (now != tokenizer.mask_token_id)).sum()
        )
        # words: a non-special, non-## token starts one; its ## tokens follow it
        for row, picks in zip(originals.tolist(), chosen.tolist(), strict=True):
            word: list[bool] = []
            for token, pick in zip(row, picks, strict=True):
                if token in tokenizer.all_special_ids or not continuation[token]:
                    if len(word) > 1:
                        words += 1
                        whole += len(set(word)) == 1
                    word = [] if token in tokenizer.all_special_ids else [pick]
                else:
                    word.append(pick)
    return stats, words, whole


MIXES = [(0.8, 0.1, 0.1), (1.0, 0.0, 0.0), (0.8, 0.0, 0.2), (0.0, 0.2, 0.8), (0.0, 0.0, 1.0)]


@pytest.mark.parametrize("whole_word", [False, True], ids=["tokens", "whole-words"])
@pytest.mark.parametrize("mask,same,rnd", MIXES)
def test_masking_selects_15_percent_with_the_configured_mix(whole_word, mask, same, rnd):
    tokenizer, corpus = _small_vocab_tokenizer()
    masking = {"probability": 0.15, "mask": mask, "same": same, "random": rnd}
    mix = MaskingConfig(**masking, whole_word=whole_word)
    masker = Masker(tokenizer, "mlm", mix, seed=0)
    stats, words, whole = _mask_statistics(masker, tokenizer, corpus)
    assert stats["ordinary"] > 100_000
    assert abs(stats["selected"] / stats["ordinary"] - 0.15) < 0.01
    # A random replacement draws any of the 70 tokens: the original one (reads as "kept") or
    # [MASK] (reads as "masked") 1 time in 70 each.
    drawn = rnd / 70
    assert abs(stats["masked"] / stats["selected"] - (mask + drawn)) < 0.01
    assert abs(stats["kept"] / stats["selected"] - (same + drawn)) < 0.01
    assert abs(stats["replaced"] / stats["selected"] - (rnd - 2 * drawn)) < 0.01
    assert words > 10_000  # the small vocabulary splits many words into pieces
    if whole_word:
        assert whole == words  # every multi-piece word is chosen whole or not at all
    else:
        assert whole < 0.9 * words  # token masking splits words (most are 2-3 pieces)


def test_ltr_does_not_mask():
    tokenizer, corpus = _small_vocab_tokenizer()
    masking = {"probability": 0.15, "mask": 0.8, "same": 0.1, "random": 0.1}
    masker = Masker(tokenizer, "ltr", MaskingConfig(**masking), seed=0)
    ids = (tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id)
    tokens, rows, keys = next(_pair_batches(tokenizer, corpus, passes=1))
    batch = collate(tokens, rows, keys, ids, masker, "ltr")
    originals = torch.from_numpy(encode_rows(tokens, rows, *ids)["input_ids"])
    assert torch.equal(batch["input_ids"], originals)  # nothing masked or replaced
    real = batch["attention_mask"].bool()
    assert torch.equal(batch["labels"][:, :-1][real[:, 1:]], originals[:, 1:][real[:, 1:]])


# --- perplexity --------------------------------------------------------------------------------


def test_perplexity_is_exp_of_the_mean_token_nll():
    assert perplexity(math.log(2) + math.log(4), 2) == pytest.approx(math.sqrt(8))
    assert perplexity(0.0, 5) == 1.0
    with pytest.raises(ValueError):
        perplexity(1.0, 0)


class _FixedLogits(torch.nn.Module):
    """A BERT pre-training model's parts (encoder, LM head, NSP head) where every position gets
    logits log([1, 1, 2]): probabilities 1/4, 1/4, 1/2."""

    def __init__(self, nsp: bool):
        super().__init__()
        self.nsp = nsp
        self.config = SimpleNamespace(vocab_size=3)
        self.cls = SimpleNamespace(
            predictions=lambda hidden: torch.log(torch.tensor([1.0, 1.0, 2.0])).expand(
                len(hidden), 3
            ),
            # always predicts IsNext (label 0)
            seq_relationship=lambda pooled: torch.tensor([[1.0, 0.0]]).expand(len(pooled), 2),
        )

    def bert(self, input_ids, **_):
        rows = input_ids.shape[0]
        return SimpleNamespace(
            last_hidden_state=torch.zeros(*input_ids.shape, 1),
            pooler_output=torch.zeros(rows, 1) if self.nsp else None,
        )


def test_heldout_metrics_on_a_hand_computable_model():
    import contextlib

    batches = [
        {
            "labels": torch.tensor([[2, -100, 0], [-100, -100, -100]]),  # p = 1/2, 1/4
            "next_sentence_label": torch.tensor([0, 1]),
        },
        {
            "labels": torch.tensor([[-100, 1, -100]]),  # p = 1/4
            "next_sentence_label": torch.tensor([0]),
        },
    ]
    for batch in batches:  # as collated: the inputs beside the labels
        ids = torch.zeros_like(batch["labels"])
        batch |= {"input_ids": ids, "attention_mask": ids + 1, "token_type_ids": ids}
    metrics = heldout_metrics(
        _FixedLogits(nsp=True), batches, "mlm_nsp", torch.device("cpu"), contextlib.nullcontext
    )
    nll = math.log(2) + math.log(4) + math.log(4)  # pooled over the 3 predicted tokens
    assert metrics["heldout_tokens"] == 3
    assert metrics["heldout_loss"] == pytest.approx(nll / 3)
    assert metrics["heldout_perplexity"] == pytest.approx(math.exp(nll / 3))  # = 32 ** (1/3)
    assert metrics["heldout_nsp_acc"] == pytest.approx(2 / 3)
    ltr = [{k: v for k, v in b.items() if k != "next_sentence_label"} for b in batches]
    metrics = heldout_metrics(
        _FixedLogits(nsp=False), ltr, "ltr", torch.device("cpu"), contextlib.nullcontext
    )
    assert metrics["heldout_perplexity"] == pytest.approx(32 ** (1 / 3))
    assert "heldout_nsp_acc" not in metrics


def test_heldout_documents_are_a_seeded_disjoint_choice():
    train, heldout = split_heldout(100, 0.05, seed=3)
    assert len(heldout) == 5 and len(train) == 95
    assert sorted([*train, *heldout]) == list(range(100)) and list(train) == sorted(train)
    again = split_heldout(100, 0.05, seed=3)
    assert (again[0] == train).all() and (again[1] == heldout).all()
    assert list(split_heldout(100, 0.05, seed=4)[1]) != list(heldout)
    assert len(split_heldout(100, 0.001, seed=3)[1]) == 2  # at least two (NSP pairs)
    assert [len(part) for part in split_heldout(100, 0.0, seed=3)] == [100, 0]
    assert [len(part) for part in split_heldout(3, 0.5, seed=3)] == [3, 0]  # can't spare any


# --- sequence-length schedule ------------------------------------------------------------------


def test_seq_len_phases():
    paper = [SeqLenPhase(**phase) for phase in PAPER["pretrain"]["seq_len_schedule"]]
    assert seq_len_phases(1_000_000, 512, paper) == [(900_000, 128), (1_000_000, 512)]
    assert seq_len_phases(10, 64, []) == [(10, 64)]
    assert seq_len_phases(5, 512, paper) == [(4, 128), (5, 512)]  # 4.5 rounds to even: 4
    assert seq_len_phases(1, 512, paper) == [(1, 128)]  # 0.9 rounds to 1: none left for 512
    late = [SeqLenPhase(seq_len=32, fraction=0.1), SeqLenPhase(seq_len=64, fraction=0.9)]
    assert seq_len_phases(4, 64, late) == [(4, 64)]  # 0.4 rounds to 0: no 32-token step


@pytest.mark.parametrize(
    "schedule,message",
    [
        ("[{seq_len = 32, fraction = 0.5}, {seq_len = 64, fraction = 0.4}]", "sum to 1"),
        ("[{seq_len = 16, fraction = 0.5}, {seq_len = 24, fraction = 0.5}]", "last phase"),
        ("[{seq_len = 64, fraction = 0.5}, {seq_len = 32, fraction = 0.5}]", "64 > max_seq_len"),
    ],
)
def test_schedule_errors_name_the_key(tmp_path: Path, schedule, message):
    path = tmp_path / "m.toml"
    path.write_text(TINY_MATRIX)
    with pytest.raises(MatrixError, match=message) as info:
        load_matrix(path, [f"pretrain.seq_len_schedule={schedule}"])
    assert "pretrain.seq_len_schedule" in str(info.value) or "pretrain" in str(info.value)


def test_pretraining_follows_the_schedule(tmp_path: Path, monkeypatch):
    from bertabl.pretrain import step_loop
    from bertabl.training import TrialRuntime

    path = tmp_path / "m.toml"
    path.write_text(TINY_MATRIX)
    schedule = "[{seq_len = 24, fraction = 0.5}, {seq_len = 64, fraction = 0.5}]"
    matrix, _ = load_matrix(
        path,
        ["pretrain.steps=6", "pretrain.max_seq_len=64", f"pretrain.seq_len_schedule={schedule}"],
    )
    trial = build_plan(matrix).pretrain[0]
    widths = []
    original = step_loop._accumulate_gradients

    def spy(net, micro_batches, *args, **kwargs):
        widths.append(max(m["input_ids"].shape[1] for m in micro_batches))
        return original(net, micro_batches, *args, **kwargs)

    monkeypatch.setattr(step_loop, "_accumulate_gradients", spy)
    metrics = step_loop.pretrain(trial.config, tmp_path / "out", TrialRuntime(torch.device("cpu")))
    assert len(widths) == 6
    assert max(widths[:3]) <= 24 < max(widths[3:]) <= 64
    assert metrics["heldout_perplexity"] > 1 and metrics["heldout_tokens"] > 0


# --- vocabularies, corpora, cache --------------------------------------------------------------


def test_trained_vocabulary_is_canonical_and_cached(tmp_path: Path, monkeypatch):
    corpus = synthetic.generate_corpus(seed=0, documents=50, sentences_per_document=4)
    first = build_tokenizer(TRAINED, tmp_path, 60, corpus, cache_dir=tmp_path / "cache")
    assert len(first) == 60
    tokens = [first.convert_ids_to_tokens(i) for i in range(60)]
    assert tokens[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    assert tokens[5:] == sorted(tokens[5:])  # numbered canonically, not in hash-map order
    import tokenizers

    monkeypatch.setattr(tokenizers, "BertWordPieceTokenizer", None)  # no training from here on
    again = build_tokenizer(TRAINED, tmp_path, 60, corpus, cache_dir=tmp_path / "cache")
    assert again.get_vocab() == first.get_vocab()  # every trial of a run shares one vocabulary


def test_vocab_size_goes_with_a_trained_tokenizer(tmp_path: Path):
    path = tmp_path / "m.toml"
    path.write_text(TINY_MATRIX)
    with pytest.raises(MatrixError, match="pretrain.vocab_size.*needs the size"):
        build_plan(load_matrix(path, ["data.tokenizer=train"])[0])
    with pytest.raises(MatrixError, match="only applies when"):
        build_plan(load_matrix(path, ["pretrain.vocab_size=100"])[0])
    matrix, _ = load_matrix(
        path, ["data.tokenizer=train", 'pretrain.axes={"vocab_size" = [100, 200]}']
    )
    plan = build_plan(matrix)
    assert len(plan.pretrain) == 4  # vocabulary size is an axis: 2 variants x 2 sizes
    by_size = {}
    for trial in plan.pretrain:
        if trial.config.pretrain.objective == "mlm_nsp":
            by_size[trial.config.pretrain.vocab_size] = trial.parameters
    # 100 more rows of the 32-wide (tied) embedding and 100 more MLM output biases
    assert by_size[200] - by_size[100] == 100 * 32 + 100


WIKITEXT = """
 = Valkyria Chronicles III =

 Senjō no Valkyria 3 is a tactical role @-@ playing video game .
 It was released in Japan .

 = = Gameplay = =

 The game features squads .

 = Tower Building of the Little Rock Arsenal =

 The Tower Building is a structure .
"""


def test_wikitext_articles_become_documents(tmp_path: Path):
    (tmp_path / "wiki.train.txt").write_text(WIKITEXT, encoding="utf-8")
    config = {"corpus": str(tmp_path), "corpus_format": "wikitext", "tokenizer": "synthetic"}
    config |= {"lowercase": True, "synthetic": {}, "corpus_hub": {}}
    assert load_corpus(corpus_data(DataSection(**config))) == [
        [
            "Senjō no Valkyria 3 is a tactical role @-@ playing video game .",
            "It was released in Japan .",
            "The game features squads .",
        ],
        ["The Tower Building is a structure ."],
    ]


def _hub_config(**hub):
    settings = {"config": None, "split": "train", "text_column": "text"}
    settings |= {"rows_per_document": 0, "max_documents": 0} | hub
    return DataSection(corpus="hub:someone/corpus", corpus_hub=settings)


def test_hub_corpus_rows_become_documents(monkeypatch):
    import datasets

    rows = datasets.Dataset.from_dict({"text": ["a b.\nc d.", "e f.", "g.\n\nh.", "i."]})
    calls = []

    def fake_load(name, config, split, streaming=False):
        calls.append((name, config, split, streaming))
        return rows.to_iterable_dataset() if streaming else rows

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    data = corpus_data(_hub_config())
    assert data.identity["corpus"] == "hub" and data.identity["name"] == "someone/corpus"
    assert load_corpus(data) == [["a b.", "c d."], ["e f."], ["g.", "h."], ["i."]]
    assert calls == [("someone/corpus", None, "train", False)]
    lines = load_corpus(corpus_data(_hub_config(rows_per_document=3, max_documents=2)))
    assert lines == [["a b.\nc d.", "e f.", "g.\n\nh."], ["i."]]
    # a prefix is streamed, and only the rows it needs are read (not the whole download)
    assert calls[-1] == ("someone/corpus", None, "train", True)
    assert load_corpus(corpus_data(_hub_config(max_documents=2))) == [["a b.", "c d."], ["e f."]]
    with pytest.raises(DataError, match="no column 'body'"):
        load_corpus(corpus_data(_hub_config(text_column="body")))


def test_hub_corpus_without_network_is_a_data_error(monkeypatch):
    import datasets

    def offline(*args, **kwargs):
        raise ConnectionError("no network")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(DataError, match="needs the network"):
        load_corpus(corpus_data(_hub_config()))


# --- scales ------------------------------------------------------------------------------------


def test_scales_section_applies_at_its_scale_and_set_wins(tmp_path: Path):
    path = tmp_path / "m.toml"
    paper_tiny = TINY_MATRIX.replace('name = "tiny"', 'name = "tiny"\nscale = "paper"')
    # the paper's 128 -> 512 schedule does not fit this file's max_seq_len of 32
    paper_tiny = paper_tiny.replace(
        "max_seq_len = 32\n", "max_seq_len = 32\nseq_len_schedule = []\n", 1
    )
    path.write_text(
        paper_tiny + "\n[scales.tiny.pretrain]\nsteps = 7\n[scales.paper.pretrain]\nsteps = 9\n"
    )
    assert load_matrix(path)[0].pretrain.steps == 9
    assert load_matrix(path, scale="tiny")[0].pretrain.steps == 7
    assert load_matrix(path, ["pretrain.steps=11"], scale="tiny")[0].pretrain.steps == 11
    paper = load_matrix(path)[0]
    assert paper.pretrain.model.layers == 1  # the file's own model beats the paper preset's
    assert paper.finetune.restarts == 2  # the file sets restarts; the preset's 5 is below it


def test_unknown_scale_sections_are_errors(tmp_path: Path):
    path = tmp_path / "m.toml"
    path.write_text(TINY_MATRIX + "\n[scales.huge.pretrain]\nsteps = 7\n")
    with pytest.raises(MatrixError, match="scales.huge: unknown scale"):
        load_matrix(path)
