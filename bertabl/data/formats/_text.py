"""Shared file reading for the format parsers: UTF-8 text with line-numbered errors."""

from __future__ import annotations

import codecs
from pathlib import Path

from bertabl.errors import DataError


def read_text(path: Path, layout: str) -> str:
    """The whole file as UTF-8 text, a leading BOM dropped; `layout` says what was expected."""
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found; expected {layout}") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror}); expected {layout}") from None
    # Some distributions (GLUE MRPC) start with a BOM; it is never part of the first field.
    if raw.startswith(codecs.BOM_UTF8):
        raw = raw[len(codecs.BOM_UTF8) :]
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise DataError(f"{path} line {line}: not valid UTF-8 text; expected {layout}") from None


def read_lines(path: Path, layout: str) -> list[str]:
    """The file's lines without their LF / CRLF endings (a final newline adds no empty line).

    Splits on "\\n" only: str.splitlines() would also split inside a field on characters such
    as \\x1c or \\u2028, which do occur in scraped text, and shift every later line number.
    """
    lines = read_text(path, layout).split("\n")
    if lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]
