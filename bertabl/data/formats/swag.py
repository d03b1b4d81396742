"""SWAG in its original "regular" CSV format (`train.csv` / `val.csv` from rowanz/swagaf).

Header: `,video-id,fold-ind,startphrase,sent1,sent2,gold-source,ending0,ending1,ending2,ending3,
label` (the first, unnamed column is a pandas row index). Unlike GLUE this is a real CSV:
fields with commas or quotes are double-quoted, and `""` inside them is a literal quote.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from bertabl.data.formats._text import read_text
from bertabl.errors import DataError

_ENDINGS = ("ending0", "ending1", "ending2", "ending3")
_REQUIRED = ("sent1", "sent2", *_ENDINGS, "label")
_LABELS = {"0": 0, "1": 1, "2": 2, "3": 3}
_LAYOUT = (
    "the SWAG CSV (train.csv / val.csv) with header ',video-id,fold-ind,startphrase,"
    "sent1,sent2,gold-source,ending0,ending1,ending2,ending3,label'"
)


def _rows(path: Path) -> list[tuple[int, list[str]]]:
    """(first line number, fields) of each CSV record; a quoted field may span lines."""
    text = read_text(path, _LAYOUT)
    # strict: an unbalanced quote is an error here, not a silently merged record.
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    rows = []
    end = 0
    try:
        for row in reader:
            rows.append((end + 1, row))
            end = reader.line_num
    except csv.Error as e:
        raise DataError(f"{path} line {end + 1}: malformed CSV ({e}); expected {_LAYOUT}") from None
    while rows and not any(field.strip() for field in rows[-1][1]):
        rows.pop()  # trailing blank lines
    return rows


def read_swag(path: Path) -> list[dict]:
    """Examples `{"context": sent1, "start": sent2, "endings": [4 str], "label": 0..3}`."""
    rows = _rows(path)
    if not rows:
        raise DataError(f"{path}: empty file; expected {_LAYOUT}")
    header_line, header = rows[0]
    missing = [name for name in _REQUIRED if name not in header]
    if missing:
        note = " (test.csv has no labels)" if missing == ["label"] else ""
        raise DataError(
            f"{path} line {header_line}: header lacks column(s) "
            f"{', '.join(map(repr, missing))}{note}; expected {_LAYOUT}"
        )
    col = {name: header.index(name) for name in _REQUIRED}
    if len(rows) == 1:
        raise DataError(f"{path}: no examples after the header; expected {_LAYOUT}")
    examples = []
    for n, row in rows[1:]:
        if len(row) != len(header):
            raise DataError(
                f"{path} line {n}: expected {len(header)} comma-separated fields "
                f"(as in the header), found {len(row)}"
            )
        raw = row[col["label"]]
        if raw not in _LABELS:
            raise DataError(
                f"{path} line {n}: label must be 0, 1, 2 or 3 (the index of the "
                f"correct ending), found {raw!r}"
            )
        examples.append(
            {
                "context": row[col["sent1"]],
                "start": row[col["sent2"]],
                "endings": [row[col[name]] for name in _ENDINGS],
                "label": _LABELS[raw],
            }
        )
    return examples
