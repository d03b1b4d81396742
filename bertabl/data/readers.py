"""Pre-training text, streamed: each corpus source as pieces of documents, never whole in memory.

A reader yields `Piece(segments, ends_document, done)`: up to PIECE_SEGMENTS sentences/segments
of one document, whether the document ends with them, and how much of the input has been read
(bytes of the files, or rows of a Hub dataset; for progress bars). A document longer than one
piece (a book that is one file, a dump with no blank lines) comes in several pieces, so memory
stays bounded by a piece whatever the input's layout: a Wikipedia dump can be one 20 GB file.

Layouts (as `data.corpus_format` names them):
- `bert`: BERT's pre-training format, one sentence per line, a blank line between documents;
- `paragraphs`: each file is one document, blank-line-separated paragraphs are its segments
  (a paragraph's lines are joined);
- `wikitext`: raw WikiText: a ` = Title = ` line starts an article, section headings
  (` = = Section = = `) are dropped, every other non-empty line is a paragraph.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

from bertabl.errors import DataError

PIECE_SEGMENTS = 2048  # segments per piece at most


class Piece(NamedTuple):
    segments: list[str]
    ends_document: bool
    done: float  # input consumed so far, in the source's progress unit


class _Pieces:
    """Collects one document's segments and cuts them into pieces."""

    def __init__(self) -> None:
        self.segments: list[str] = []
        self.open = False  # a piece of the current document was already given out

    def add(self, segment: str, done: float) -> Piece | None:
        self.segments.append(segment)
        if len(self.segments) < PIECE_SEGMENTS:
            return None
        piece, self.segments, self.open = Piece(self.segments, False, done), [], True
        return piece

    def end(self, done: float) -> Piece | None:
        if not self.segments and not self.open:
            return None  # no document to end (two blank lines, a title with no text)
        piece, self.segments, self.open = Piece(self.segments, True, done), [], False
        return piece


def file_pieces(path: Path, layout: str, before: float = 0.0) -> Iterator[Piece]:
    """The pieces of one text file (universal newlines, so CRLF is fine; a UTF-8 BOM is
    skipped). Progress counts characters as bytes from `before` on: close enough for an ETA."""
    reader = READERS[layout]
    with open(path, encoding="utf-8-sig") as handle:
        yield from reader(handle, before)


def _counted(lines: Iterable[str], before: float) -> Iterator[tuple[str, float]]:
    done = before
    for line in lines:
        done += len(line)
        yield line.rstrip("\n"), done


def _line_by_line(
    lines: Iterable[str], before: float, segment_of: Callable[[str], str | None]
) -> Iterator[Piece]:
    """The pieces of a layout that reads each line on its own: `segment_of(line)` is the segment
    the line adds, "" where the line ends a document, None where it adds nothing."""
    pieces, done = _Pieces(), before
    for line, done in _counted(lines, before):
        segment = segment_of(line)
        if segment is None:
            continue
        piece = pieces.add(segment, done) if segment else pieces.end(done)
        if piece:
            yield piece
    if piece := pieces.end(done):
        yield piece


def _bert(lines: Iterable[str], before: float) -> Iterator[Piece]:
    return _line_by_line(lines, before, _bert_segment)


def _bert_segment(line: str) -> str | None:
    if not line:  # a blank line ends a document; a line of spaces does not (as before)
        return ""
    return line.strip() or None


def _paragraphs(lines: Iterable[str], before: float) -> Iterator[Piece]:
    pieces, block, done = _Pieces(), [], before
    for line, done in _counted(lines, before):
        if line:
            block.append(line.strip())
            continue
        paragraph = " ".join(block).strip()
        block = []
        if paragraph and (piece := pieces.add(paragraph, done)):
            yield piece
    paragraph = " ".join(block).strip()
    if paragraph and (piece := pieces.add(paragraph, done)):
        yield piece
    if piece := pieces.end(done):  # the file is the document
        yield piece


_WIKI_TITLE = re.compile(r"= [^=].*[^=] =")
_WIKI_HEADING = re.compile(r"(= )+.*( =)+")


def _wikitext(lines: Iterable[str], before: float) -> Iterator[Piece]:
    return _line_by_line(lines, before, _wikitext_segment)


def _wikitext_segment(line: str) -> str | None:
    line = line.strip()
    if _WIKI_TITLE.fullmatch(line):
        return ""
    if not line or _WIKI_HEADING.fullmatch(line):
        return None
    return line


READERS = {"bert": _bert, "paragraphs": _paragraphs, "wikitext": _wikitext}


def document_pieces(documents: Iterable[list[str]], before: float = 0.0) -> Iterator[Piece]:
    """In-memory documents (the synthetic corpus) as pieces; progress counts documents."""
    for index, document in enumerate(documents):
        yield from _document(document, before + index + 1)


def _document(segments: Iterable[str], done: float) -> Iterator[Piece]:
    pieces = _Pieces()
    for segment in segments:
        if piece := pieces.add(segment, done):
            yield piece
    if piece := pieces.end(done):
        yield piece


def hub_pieces(identity: dict[str, Any], before: float = 0.0) -> Iterator[Piece]:
    """Rows of a Hub dataset as documents; progress counts rows.

    With `max_documents` the dataset is streamed and only the rows those documents need are
    read: asking for a prefix of Wikipedia downloads that prefix, not the 20 GB dump. Without
    it the whole split is loaded the usual way (downloaded once into the `datasets` cache,
    memory-mapped) and read in batches of rows, never converted whole.
    """
    name, column = identity["name"], identity["text_column"]
    per_document, limit = identity["rows_per_document"], identity["max_documents"]
    rows = _open_hub(identity, streaming=bool(limit))
    if limit:
        rows = rows.take(limit * (per_document or 1))
    done, count = before, 0
    group: list[str] = []
    for batch in _hub_batches(rows, name):
        if column not in batch:
            raise DataError(
                f"hub:{name}: no column '{column}' (data.corpus_hub.text_column); columns: "
                f"{', '.join(batch)}"
            )
        for text in batch[column]:
            done, count = done + 1, count + 1
            if per_document == 0:  # a row is a document, its lines the segments
                yield from _document((p.strip() for p in text.splitlines() if p.strip()), done)
                continue
            if text.strip():
                group.append(text.strip())
            if count % per_document == 0:
                yield from _document(group, done)
                group = []
    yield from _document(group, done)


def hub_rows(identity: dict[str, Any]) -> int | None:
    """How many rows `hub_pieces` will read, when known without reading them."""
    if identity["max_documents"]:
        return identity["max_documents"] * (identity["rows_per_document"] or 1)
    return None


def _open_hub(identity: dict[str, Any], streaming: bool):
    import datasets

    name = identity["name"]
    try:
        if streaming:
            return datasets.load_dataset(
                name, identity["config"], split=identity["split"], streaming=True
            )
        return datasets.load_dataset(name, identity["config"], split=identity["split"])
    except Exception as err:  # datasets raises many types for a missing name/config/network
        raise _hub_error(name, err) from None


def _hub_batches(rows, name: str, size: int = 1000) -> Iterator[dict[str, list]]:
    iterator = iter(rows.iter(batch_size=size))
    while True:
        try:  # a streamed dataset meets the network while it is read, not when opened
            batch = next(iterator)
        except StopIteration:
            return
        except DataError:
            raise
        except Exception as err:  # noqa: BLE001 - the same causes as in _open_hub
            raise _hub_error(name, err) from None
        yield batch


def _hub_error(name: str, err: Exception) -> DataError:
    first = str(err).splitlines()[0] if str(err) else ""
    return DataError(
        f"hub:{name}: could not load the dataset ({type(err).__name__}: {first}); it needs the "
        "network, and data.corpus_hub.config / split must exist"
    )
