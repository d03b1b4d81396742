"""Token tagging (CoNLL-2003 NER): a label per word at its first sub-token, entity-level
precision/recall/F1 (conlleval). Two heads: a linear classifier on every token state of the
fine-tuned encoder (`Tagging`), or Table 7's feature-based tagger, a 2-layer BiLSTM over frozen
features of the encoder's layers (`FeatureTagging`, head = "features")."""

from __future__ import annotations

from functools import cached_property

import torch
from transformers import AutoConfig, AutoModelForTokenClassification

from bertabl.finetune.families.base import FamilyData, Scored, forward_batches, length_of
from bertabl.finetune.families.tagging import encoding
from bertabl.finetune.families.tagging import features as tag_features
from bertabl.finetune.heads import FeatureTaggingHead
from bertabl.tasks import sources
from bertabl.training import Precision
from bertabl.trial.finetune import DEFAULT_TAG_SCHEME


class Tagging(FamilyData):
    def encode(self, rows, split: str) -> list[dict]:
        sentences = list(rows)
        context = None
        if self.config.document_context:  # the whole file's documents, whatever the slice
            document = sources.documents(self.spec, split, self.data)
            context = encoding.document_context(sentences, document, self.tokenizer)
        scheme = self.config.tag_scheme or DEFAULT_TAG_SCHEME
        return encoding.encode(sentences, self.tokenizer, self.config.max_seq_len, context, scheme)

    def _collate(self, items: list) -> dict[str, torch.Tensor]:
        return encoding.collate(items, self.tokenizer.pad_token_id, self.pad_multiple)

    def _build(self) -> torch.nn.Module:
        return AutoModelForTokenClassification.from_pretrained(
            self.pretrained_dir, num_labels=self.spec.num_labels
        )

    @torch.no_grad()
    def evaluate(self, model: torch.nn.Module, split: str, precision: Precision) -> Scored:
        """Entity-level scores of each word's first-sub-token prediction."""
        predicted: list[list[str]] = []
        batches = forward_batches(
            model, self.encoded[split], self.collate, self.config.eval_batch_size, precision
        )
        for chunk, _, _, out in batches:
            ids = out.logits.argmax(-1).cpu()
            predicted += encoding.decode_batch([row.tolist() for row in ids], chunk)
        return self._scored(predicted, split)

    def _scored(self, predicted: list[list[str]], split: str) -> Scored:
        """Entity-level scores and the word-level tags of each sentence, in file order."""
        gold = self.raw[split]["tags"]
        lines = [
            {"index": i, "tags": tags, "gold": list(g)}
            for i, (tags, g) in enumerate(zip(predicted, gold, strict=True))
        ]
        return Scored(encoding.evaluate(predicted, gold), lines)


class FeatureTagging(Tagging):
    """The encoder frozen: its hidden states are computed once per (checkpoint, data), shared by
    the six feature variants of one pre-trained model in its trial directory; the items the
    loop batches are sentence indices."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.states = {
            split: tag_features.cached_hidden_states(
                self.pretrained_dir,
                encoded,
                self.cache_dir,
                batch_size=self.config.eval_batch_size,
                device=self.device,
            )
            for split, encoded in self.encoded.items()
        }
        # A test-split trial encodes only the splits it scores: no training items then.
        self.train = list(range(len(self.encoded.get("train", []))))

    @cached_property
    def lengths(self) -> list[int]:
        return [length_of(x) for x in self.encoded["train"]]  # the items are indices

    @cached_property
    def layers(self) -> list[int]:
        """The hidden-state layers the trial's feature mode reads (the only ones batched)."""
        layers = AutoConfig.from_pretrained(self.pretrained_dir).num_hidden_layers
        return tag_features.layer_indices(self.config.features, layers)

    def _collate_split(self, split: str, indices: list[int]) -> dict[str, torch.Tensor]:
        sentences, states = self.encoded[split], self.states[split]
        return tag_features.collate(
            [sentences[i] for i in indices], [states[i] for i in indices], self.layers
        )

    def _collate(self, items: list) -> dict[str, torch.Tensor]:  # training items only
        return self._collate_split("train", items)

    def readable(self) -> None:
        return None  # no word embeddings: the frozen encoder ran in the feature cache

    def _build(self) -> torch.nn.Module:
        encoder = AutoConfig.from_pretrained(self.pretrained_dir)
        tagger = tag_features.FeatureTagger(
            self.config.features,
            num_layers=encoder.num_hidden_layers,
            hidden=encoder.hidden_size,
            lstm_hidden=self.config.bilstm_hidden or encoder.hidden_size,
            num_labels=self.spec.num_labels,
        )
        return FeatureTaggingHead(tagger)

    @torch.no_grad()
    def evaluate(self, model: torch.nn.Module, split: str, precision: Precision) -> Scored:
        """Entity-level F1 of the feature-based tagger (frozen features, trained BiLSTM)."""
        sentences = self.encoded[split]
        predicted: list[list[str]] = []
        batches = forward_batches(
            model,
            list(range(len(sentences))),
            lambda indices: self._collate_split(split, indices),
            self.config.eval_batch_size,
            precision,
        )
        for indices, _, batch, out in batches:
            chunk = [sentences[i] for i in indices]
            predicted += tag_features.predict_tags(out.logits.cpu(), batch["first"].cpu(), chunk)
        return self._scored(predicted, split)
