"""The token tagging family (CoNLL-2003 NER), in three parts too long for one module:

- adapter.py: the family's adapters, `Tagging` (a linear classifier on the fine-tuned encoder's
  token states) and `FeatureTagging` (Table 7's BiLSTM over frozen features);
- encoding.py: words and tags -> sub-token inputs and labels (first sub-token of each word),
  document context, decoding back to word tags, entity-level scores;
- features.py: the frozen encoder's hidden states (computed once, cached) and the BiLSTM tagger
  that reads one of Table 7's six feature choices.
"""

from __future__ import annotations

from bertabl.finetune.families.tagging.adapter import FeatureTagging, Tagging

__all__ = ["FeatureTagging", "Tagging"]
