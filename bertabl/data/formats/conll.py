"""CoNLL-2003 English NER in its original 4-column format (`eng.train`, `eng.testa`, `eng.testb`).

One token a line, `word POS chunk NER`; blank lines end sentences; `-DOCSTART- -X- O O` lines
start documents. Tags are kept as in the file, which is IOB1 (I- opens an entity; B- only
separates two adjacent entities of the same type): converting to IOB2 is the caller's choice.
"""

from __future__ import annotations

from pathlib import Path

from bertabl.data.formats._text import read_lines
from bertabl.errors import DataError

# Same order as the Hugging Face `conll2003` dataset's ner_tags, so tag ids agree with it.
CONLL_LABELS: tuple[str, ...] = (
    "O",
    "B-PER",
    "I-PER",
    "B-ORG",
    "I-ORG",
    "B-LOC",
    "I-LOC",
    "B-MISC",
    "I-MISC",
)

_LAYOUT = (
    "the CoNLL-2003 format: one token a line as 'word POS chunk NER', blank lines "
    "between sentences, '-DOCSTART-' lines between documents"
)


def read_conll2003(path: Path) -> list[dict]:
    """Sentences `{"tokens", "tags", "document"}`; `document` counts -DOCSTART- blocks from 0."""
    lines = read_lines(path, _LAYOUT)
    known = set(CONLL_LABELS)
    sentences: list[dict] = []
    tokens: list[str] = []
    tags: list[str] = []
    document = -1  # becomes 0 at the first -DOCSTART- (or at a sentence before any)

    def flush() -> None:
        nonlocal tokens, tags, document
        if tokens:
            document = max(document, 0)
            sentences.append({"tokens": tokens, "tags": tags, "document": document})
            tokens, tags = [], []

    for n, line in enumerate(lines, 1):
        # split() rather than split(" "): some copies of the files use tabs between fields.
        fields = line.split()
        if not fields:
            flush()
        elif fields[0] == "-DOCSTART-":
            # A missing blank line before -DOCSTART- must not glue two documents' sentences.
            flush()
            document += 1
        elif len(fields) != 4:
            raise DataError(
                f"{path} line {n}: expected 4 space-separated fields "
                f"(word POS chunk NER), found {len(fields)}"
            )
        elif fields[3] not in known:
            raise DataError(
                f"{path} line {n}: unknown NER tag {fields[3]!r}; expected one of "
                f"{', '.join(CONLL_LABELS)}"
            )
        else:
            tokens.append(fields[0])
            tags.append(fields[3])
    flush()
    if not sentences:
        raise DataError(f"{path}: no sentences found; expected {_LAYOUT}")
    return sentences
