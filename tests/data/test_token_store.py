"""The token store: the corpus's token ids as the trial's tokenizer gives them, built once,
memory-mapped, atomic."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bertabl.data import token_store
from bertabl.data.corpus import corpus_data, load_corpus
from bertabl.data.token_store import TokenStore, build_store, ensure_store, store_dir, trial_store
from bertabl.data.tokenizer import build_tokenizer
from bertabl.errors import DataError
from bertabl.matrix.schema import DataSection

SYNTHETIC = {"seed": 1, "documents": 30, "sentences_per_document": 3}


def _data(**section):
    return corpus_data(DataSection(**({"synthetic": SYNTHETIC} | section)))


def _expected(data, tokenizer) -> list[list[list[int]]]:
    """What the trial's tokenizer gives, document by document (empty sentences dropped)."""
    documents = load_corpus(data)
    ids = [tokenizer(d, add_special_tokens=False)["input_ids"] for d in documents]
    return [[s for s in d if s] for d in ids]


def test_store_holds_the_tokenizers_ids(tmp_path: Path):
    data = _data()
    tokenizer = build_tokenizer(data, tmp_path / "vocab")
    meta = build_store(data, tokenizer, tmp_path / "store")
    store = TokenStore.open(tmp_path / "store")
    assert isinstance(store.tokens, np.memmap) and store.tokens.dtype == np.uint16
    assert meta["documents"] == store.n_documents == 30
    assert [store.document(i) for i in range(30)] == _expected(data, tokenizer)
    lengths = store.document_lengths()
    assert lengths.sum() == len(store.tokens) == meta["tokens"]


def test_gutenberg_with_the_bert_vocabulary(shared_data: Path, tmp_path: Path):
    vocab = shared_data / "vocab" / "bert-base-uncased-vocab.txt"
    data = _data(
        corpus=str(shared_data / "corpus" / "gutenberg"),
        corpus_format="paragraphs",
        tokenizer=str(vocab),
    )
    tokenizer = build_tokenizer(data, tmp_path)
    build_store(data, tokenizer, tmp_path / "store")
    store = TokenStore.open(tmp_path / "store")
    assert store.n_documents == 6 and store.vocab_size == 30522
    assert [store.document(i) for i in range(6)] == _expected(data, tokenizer)
    assert store.tokens.nbytes == 2 * len(store.tokens)  # 2 bytes a token


def test_large_vocabularies_use_int32(tmp_path: Path):
    words = [f"w{i}" for i in range(70_000)]
    (tmp_path / "vocab.txt").write_text(
        "\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]) + "\n"
    )
    (tmp_path / "corpus.txt").write_text("w69999 w1 w2\nw3\n\nw4 w5\nw69998\n")
    data = _data(corpus=str(tmp_path / "corpus.txt"), tokenizer=str(tmp_path / "vocab.txt"))
    tokenizer = build_tokenizer(data, tmp_path)
    build_store(data, tokenizer, tmp_path / "store")
    store = TokenStore.open(tmp_path / "store")
    assert store.tokens.dtype == np.int32
    assert store.document(0)[0] == tokenizer.convert_tokens_to_ids(["w69999", "w1", "w2"])


def test_built_once_then_reused(tmp_path: Path, monkeypatch):
    data = _data()
    tokenizer = build_tokenizer(data, tmp_path / "vocab")
    cache = tmp_path / "cache"
    folder = ensure_store(data, tokenizer, cache)
    assert folder == store_dir(data, cache) and (folder / "meta.json").is_file()

    def no_reading(_data):
        raise AssertionError("the stored copy should be used")

    monkeypatch.setattr(token_store, "iter_pieces", no_reading)
    assert ensure_store(data, tokenizer, cache) == folder
    other = _data(synthetic=SYNTHETIC | {"seed": 2})
    assert store_dir(other, cache) != folder  # another corpus, another store


def test_a_killed_build_leaves_nothing_that_looks_finished(tmp_path: Path, monkeypatch):
    data = _data()
    tokenizer = build_tokenizer(data, tmp_path / "vocab")
    cache = tmp_path / "cache"

    def killed(*args, **kwargs):
        raise KeyboardInterrupt  # stands in for a kill mid-tokenisation

    monkeypatch.setattr(token_store, "tokenize_tasks", killed)
    with pytest.raises(KeyboardInterrupt):
        ensure_store(data, tokenizer, cache)
    folder = store_dir(data, cache)
    assert not folder.exists() and not list(cache.glob("*.partial-*"))
    # a partial folder a SIGKILL left behind is removed by the next build
    (cache / f"{folder.name}.partial-999999").mkdir()
    monkeypatch.undo()
    ensure_store(data, tokenizer, cache)
    assert (folder / "meta.json").is_file() and not list(cache.glob("*.partial-*"))


def test_a_trial_without_a_cache_gets_a_temporary_store(tmp_path: Path):
    data = _data()
    tokenizer = build_tokenizer(data, tmp_path / "vocab")
    with trial_store(data, tokenizer, None) as folder:
        assert TokenStore.open(folder).n_documents == 30
    assert not folder.exists()


def test_empty_sentences_and_documents_are_dropped(tmp_path: Path):
    (tmp_path / "c.txt").write_text("the cat\n\u200b\n\n\u200b\n\nthe dog\n")  # zero-width space
    data = _data(corpus=str(tmp_path / "c.txt"), tokenizer="synthetic")
    tokenizer = build_tokenizer(data, tmp_path)
    build_store(data, tokenizer, tmp_path / "store")
    store = TokenStore.open(tmp_path / "store")
    ids = tokenizer(["the cat", "the dog"], add_special_tokens=False)["input_ids"]
    assert [store.document(i) for i in range(store.n_documents)] == [[ids[0]], [ids[1]]]


def test_one_document_is_a_data_error(tmp_path: Path):
    (tmp_path / "one.txt").write_text("Only one document.\n")
    data = _data(corpus=str(tmp_path / "one.txt"))
    tokenizer = build_tokenizer(data, tmp_path)
    with pytest.raises(DataError, match="at least two"):
        ensure_store(data, tokenizer, tmp_path / "cache")
    assert not list((tmp_path / "cache").glob("tokens-*/"))
