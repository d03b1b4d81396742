"""The BERT paper's published numbers (paper_reference.toml, shipped as package data).

Each paper table's rows get a stable id, which a matrix's variant names match (or
`report.paper_rows` maps to): Table 5 rows are keyed by `variant`, Table 7 rows by `system`.
Table 6 and Table 8 print no ids, so they are derived from the row's defining values:
Table 6 `l{layers}_h{hidden}_a{heads}` (e.g. l12_h768_a12 is BERT-Base) and Table 8 the non-zero
percentages as `mask{M}_same{S}_rnd{R}` (e.g. mask80_same10_rnd10, mask100, same20_rnd80).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bertabl.io import tomllib

REFERENCE_FILE = Path(__file__).with_name("paper_reference.toml")
CITATION = "Devlin et al. (2019), arXiv:1810.04805v2"


@dataclass(frozen=True)
class PaperRow:
    id: str
    label: str
    values: dict[str, Any]  # every key of the row as printed (scores in percent)


@functools.cache
def reference() -> dict[str, Any]:
    """The whole reference file as parsed TOML."""
    with REFERENCE_FILE.open("rb") as handle:
        return tomllib.load(handle)


def table6_id(layers: int, hidden: int, heads: int) -> str:
    return f"l{layers}_h{hidden}_a{heads}"


def table8_id(mask_pct: int, same_pct: int, rnd_pct: int) -> str:
    parts = [f"{k}{v}" for k, v in (("mask", mask_pct), ("same", same_pct), ("rnd", rnd_pct)) if v]
    return "_".join(parts)


def paper_rows(table: str) -> dict[str, PaperRow]:
    """id -> row of a paper table (table5 .. table8), in the paper's order."""
    rows = {}
    for raw in reference()[table]["rows"]:
        if table == "table6":
            row_id = table6_id(raw["layers"], raw["hidden"], raw["heads"])
            label = f"{raw['layers']}/{raw['hidden']}/{raw['heads']}"
        elif table == "table8":
            row_id = table8_id(raw["mask_pct"], raw["same_pct"], raw["rnd_pct"])
            label = f"{raw['mask_pct']}% / {raw['same_pct']}% / {raw['rnd_pct']}%"
        else:
            row_id = raw.get("variant") or raw["system"]
            label = raw["label"]
        rows[row_id] = PaperRow(row_id, label, dict(raw))
    return rows


def figure5_points() -> dict[str, Any]:
    """Figure 5's plotted points (thousands of steps -> MNLI accuracy per series) and caveats."""
    return dict(reference()["figure5"]["plot_points"])
