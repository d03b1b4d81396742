"""Parsers for the original distribution formats of the BERT paper's fine-tuning datasets."""

from bertabl.data.formats.conll import CONLL_LABELS, read_conll2003
from bertabl.data.formats.glue import GLUE_TASKS, read_glue
from bertabl.data.formats.squad import load_squad_json, read_squad
from bertabl.data.formats.swag import read_swag

__all__ = [
    "CONLL_LABELS",
    "GLUE_TASKS",
    "load_squad_json",
    "read_conll2003",
    "read_glue",
    "read_squad",
    "read_swag",
]
