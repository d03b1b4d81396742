"""Pre-training corpora from text files, and tokenizers from vocabulary files."""

from __future__ import annotations

from pathlib import Path

import pytest

from bertabl.data.corpus import corpus_data, load_corpus
from bertabl.data.tokenizer import build_tokenizer, vocab_size
from bertabl.errors import DataError
from bertabl.matrix.schema import DataSection


def _config(corpus: Path | str, fmt: str = "bert", tokenizer: str = "synthetic") -> DataSection:
    return DataSection(corpus=str(corpus), corpus_format=fmt, tokenizer=tokenizer, lowercase=True)


def test_bert_format_sentences_per_line_documents_by_blank_lines(tmp_path: Path):
    (tmp_path / "a.txt").write_text("One sentence.\nTwo sentence.\n\nThird doc.\r\nFourth.\r\n")
    documents = load_corpus(corpus_data(_config(tmp_path / "a.txt")))
    assert documents == [["One sentence.", "Two sentence."], ["Third doc.", "Fourth."]]


def test_paragraph_format_one_document_per_file(tmp_path: Path):
    (tmp_path / "b.txt").write_text("A first\nparagraph.\n\nA second one.\n")
    (tmp_path / "c.txt").write_text("Another book.\n")
    documents = load_corpus(corpus_data(_config(tmp_path, "paragraphs")))
    assert documents == [["A first paragraph.", "A second one."], ["Another book."]]


def test_corpus_identity_is_content_not_path(tmp_path: Path):
    for name in ("x", "y"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "doc.txt").write_text("Same.\n\nText.\n")
    a, b = (corpus_data(_config(tmp_path / n)) for n in ("x", "y"))
    assert a.identity == b.identity and a.location != b.location


def test_corpus_errors(tmp_path: Path):
    with pytest.raises(DataError, match="not found"):
        corpus_data(_config(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no .txt files"):
        corpus_data(_config(tmp_path / "empty"))
    (tmp_path / "one.txt").write_text("Only one document.\n")
    with pytest.raises(DataError, match="at least two"):
        load_corpus(corpus_data(_config(tmp_path / "one.txt")))


def test_gutenberg_books_and_the_bert_vocab(shared_data: Path, tmp_path: Path):
    vocab = shared_data / "vocab" / "bert-base-uncased-vocab.txt"
    config = _config(shared_data / "corpus" / "gutenberg", "paragraphs", str(vocab))
    data = corpus_data(config)
    documents = load_corpus(data)
    assert len(documents) == 6  # one per book (MANIFEST.md)
    assert documents[0][0] == "[Emma by Jane Austen 1816]"
    assert vocab_size(config) == 30522
    tokenizer = build_tokenizer(data, tmp_path)
    assert len(tokenizer) == 30522
    assert tokenizer.convert_tokens_to_ids(["[UNK]", "[CLS]", "[SEP]", "[MASK]"]) == [
        100,
        101,
        102,
        103,
    ]  # MANIFEST.md
    assert tokenizer.tokenize("Emma Woodhouse") == ["emma", "wood", "##house"]


def test_several_corpora_are_concatenated_as_documents(tmp_path: Path):
    books, wiki = tmp_path / "books", tmp_path / "wiki.txt"
    books.mkdir()
    (books / "a.txt").write_text("Book one.\n\nIts second paragraph.\n")
    (books / "b.txt").write_text("Book two.\n")
    wiki.write_text("Article one.\nIts sentence.\n\nArticle two.\n")
    synthetic = {"seed": 0, "documents": 2, "sentences_per_document": 2}
    section = DataSection(
        corpora=[
            {"corpus": str(books), "corpus_format": "paragraphs"},
            {"corpus": str(wiki)},
            {"corpus": "synthetic"},
        ],
        synthetic=synthetic,
    )
    data = corpus_data(section)
    assert [c["corpus"] for c in data.identity["corpora"]] == ["files", "files", "synthetic"]
    documents = load_corpus(data)
    assert documents[:4] == [
        ["Book one.", "Its second paragraph."],
        ["Book two."],
        ["Article one.", "Its sentence."],
        ["Article two."],
    ]
    assert len(documents) == 6  # + the two synthetic ones
    # one corpus is the same data (and trial ids) however it is given
    alone = corpus_data(DataSection(corpora=[{"corpus": str(wiki)}]))
    assert alone.identity == corpus_data(_config(wiki)).identity


def test_a_corpus_given_twice_is_a_matrix_error(tiny_matrix: Path, tmp_path: Path):
    from bertabl.errors import MatrixError
    from bertabl.matrix.load import load_matrix

    (tmp_path / "c.txt").write_text("One.\n\nTwo.\n")
    corpora = f'data.corpora=[{{corpus = "{tmp_path / "c.txt"}"}}]'
    with pytest.raises(MatrixError, match="data.corpora and data.corpus both name"):
        load_matrix(tiny_matrix, [corpora, "data.corpus=synthetic"])
    assert load_matrix(tiny_matrix, [corpora])[0].data.corpora[0].corpus_format == "bert"
