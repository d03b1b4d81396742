"""The layout of the paper's tables: their columns (a task each), baselines and row ids."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from bertabl.paper import reference

LAYOUTS = ("generic", "table5", "table6", "table7", "table8", "fig5")


@dataclass(frozen=True)
class Column:
    key: str  # the paper's column key (or the task name in `generic`)
    heading: str
    task: str
    split: str = "dev"


PAPER_COLUMNS = {
    "table5": [
        Column("mnli_m", "MNLI-m", "mnli"),
        Column("qnli", "QNLI", "qnli"),
        Column("mrpc", "MRPC", "mrpc"),
        Column("sst2", "SST-2", "sst2"),
        Column("squad_v11_f1", "SQuAD F1", "squad_v1"),
    ],
    "table6": [
        Column("mnli_m", "MNLI-m", "mnli"),
        Column("mrpc", "MRPC", "mrpc"),
        Column("sst2", "SST-2", "sst2"),
    ],
    "table7": [
        Column("dev_f1", "Dev F1", "conll2003"),
        Column("test_f1", "Test F1", "conll2003", "test"),
    ],
    "table8": [
        Column("mnli_finetune", "MNLI (fine-tune)", "mnli"),
        Column("ner_finetune", "NER (fine-tune)", "conll2003"),
        Column("ner_feature_based", "NER (feature-based)", "conll2003_features"),
    ],
}
PAPER_BASELINE = {
    "table5": "bert_base",
    "table6": reference.table6_id(12, 768, 12),
    "table7": "bert_base",
    "table8": reference.table8_id(80, 10, 10),
}


def infer_layout(
    layout: str | None, name: str, variants: Sequence[str], tasks: Sequence[str]
) -> str:
    """A matrix's `report.layout`, else the paper layout its name names, else the paper table
    whose row ids all its variant names are and whose columns all its tasks are, else
    generic."""
    if layout is not None:
        return layout
    if name in LAYOUTS:
        return name
    names, wanted = set(variants), set(tasks)
    for table in ("table5", "table7", "table8"):
        columns = {c.task for c in PAPER_COLUMNS[table]}
        if len(names) >= 2 and names <= set(reference.paper_rows(table)) and wanted <= columns:
            return table
    return "generic"


def paper_rows_problem(
    paper_rows: dict[str, str], variants: Sequence[str], layout: str
) -> str | None:
    """What is wrong with `report.paper_rows` (one line naming the key), or None: it must name
    our variants and, in a paper table, that table's rows."""
    ids = list(reference.paper_rows(layout)) if layout in PAPER_COLUMNS else None
    for name, paper_id in paper_rows.items():
        if name not in variants:
            return (
                f"report.paper_rows.{name}: no variant is named '{name}'; variants: "
                f"{', '.join(variants) or 'none'}"
            )
        if ids is not None and paper_id not in ids:
            return (
                f"report.paper_rows.{name} = '{paper_id}': not a row of the paper's {layout}; "
                f"its rows: {', '.join(ids)}"
            )
    return None
