"""Streamed corpus readers: documents come in pieces of bounded size, with progress."""

from __future__ import annotations

from pathlib import Path

import pytest

from bertabl.data import readers
from bertabl.data.readers import document_pieces, file_pieces


def _documents(pieces) -> list[list[str]]:
    documents, current = [], []
    for piece in pieces:
        current += piece.segments
        if piece.ends_document:
            documents.append(current)
            current = []
    assert not current, "every document is closed"
    return documents


def test_a_long_document_streams_in_pieces(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(readers, "PIECE_SEGMENTS", 3)
    path = tmp_path / "book.txt"
    path.write_text("\n\n".join(f"Paragraph {i}\nwith two lines." for i in range(8)) + "\n")
    pieces = list(file_pieces(path, "paragraphs"))
    assert [len(p.segments) for p in pieces] == [3, 3, 2]
    assert [p.ends_document for p in pieces] == [False, False, True]
    assert _documents(pieces) == [[f"Paragraph {i} with two lines." for i in range(8)]]
    done = [p.done for p in pieces]
    assert done == sorted(done) and done[-1] == path.stat().st_size  # ASCII: chars = bytes


def test_a_document_ending_right_after_a_full_piece_is_closed(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(readers, "PIECE_SEGMENTS", 2)
    path = tmp_path / "a.txt"
    path.write_text("one\ntwo\n\nthree\n")
    pieces = list(file_pieces(path, "bert"))
    assert [(p.segments, p.ends_document) for p in pieces] == [
        (["one", "two"], False),
        ([], True),  # the blank line closes the document whose segments already went out
        (["three"], True),
    ]


def test_bert_format_blank_lines_only_separate(tmp_path: Path):
    path = tmp_path / "a.txt"
    # a BOM, CRLF endings, a line of spaces inside a document, several blank lines
    path.write_bytes("\ufeffOne.\r\n   \r\nTwo.\r\n\r\n\r\n\r\nThree.\n".encode())
    assert _documents(file_pieces(path, "bert")) == [["One.", "Two."], ["Three."]]


@pytest.mark.parametrize("layout", ["bert", "paragraphs", "wikitext"])
def test_empty_files_have_no_documents(tmp_path: Path, layout: str):
    path = tmp_path / "empty.txt"
    path.write_text("\n\n  \n")
    assert _documents(file_pieces(path, layout)) == []


def test_in_memory_documents_count_progress_in_documents():
    pieces = list(document_pieces([["a", "b"], ["c"]]))
    assert _documents(pieces) == [["a", "b"], ["c"]]
    assert [p.done for p in pieces] == [1, 2]
