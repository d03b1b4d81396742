"""The tiny WordPiece vocabulary the tagging tests encode with (tests/fixtures/ner/vocab.txt:
"Woodhouse" -> wood ##house and "Highbury" -> high ##bury, as in BERT's)."""

from __future__ import annotations

import pytest
from transformers import BertTokenizerFast

from tests.conftest import FIXTURES


@pytest.fixture(scope="module")
def tok() -> BertTokenizerFast:
    return BertTokenizerFast(vocab=str(FIXTURES / "ner" / "vocab.txt"), do_lower_case=True)
