"""Tables as the command line prints them: whole in a pipe, fitted to a terminal without cutting
a word, ids never wrapped."""

from __future__ import annotations

import io

from rich.console import Console

from bertabl.cli_tables import columns_table, show, si

ID = "ft-0123abcd"
ROWS = "fine_tuning, weighted_sum_last_four, concat_last_four"


def _table():
    table = columns_table("trial", "rows", "FLOPs ≤")
    table.add_row(ID, ROWS, "5.87e+13")
    return table


def _shown(**console) -> list[str]:
    out = io.StringIO()
    show(Console(file=out, color_system=None, **console), "title", _table())
    return out.getvalue().splitlines()


def test_in_a_pipe_a_table_is_never_cut_to_the_width_rich_assumes():
    lines = _shown(width=40)
    assert "…" not in "".join(lines)
    assert lines[0] == "title"
    assert lines[2].rstrip().split(None, 1) == [ID, f"{ROWS}  5.87e+13"]  # nothing wrapped


def test_on_a_narrow_terminal_words_wrap_and_ids_and_numbers_stay_whole():
    lines = _shown(width=60, force_terminal=True)
    text = "\n".join(lines)
    assert "…" not in text and max(map(len, lines)) <= 60
    assert lines[2].split()[0] == ID and lines[2].split()[-1] == "5.87e+13"
    words = [w for line in lines[2:] for w in line.split() if w not in (ID, "5.87e+13")]
    assert " ".join(words) == ROWS  # wrapped between words, every word whole
    # narrower than its longest words: as narrow as they allow, the terminal wraps the rest
    lines = _shown(width=20, force_terminal=True)
    assert "…" not in "\n".join(lines) and "weighted_sum_last_four," in "\n".join(lines)


def test_si_prefixes():
    assert [si(n) for n in (999, 120_500, 4.8e6, 2.0e9, 3.3e12)] == [
        "999", "120.5k", "4.8M", "2.0G", "3.3T"
    ]  # fmt: skip
