"""What a pre-training objective gives the rest of bertabl: the facts the plan, the data
preparation and the report ask (does it read a corpus, train NSP, keep a causal mask, which
heads does its model carry), and what the training loop runs (its model and LM head, the module
its loss goes through, its targets, the names its losses are logged under).

An objective is one file in this folder (mlm_nsp.py, mlm.py, ltr.py, none.py) and its name in
trial/pretrain.py's `Objective`; nothing outside this folder compares objective names. Masking
(masking.py), batching (batches.py), the loop (step_loop.py) and the held-out pass (perplexity.py)
are shared and ask the objective.

Facts are class attributes, read when a matrix is planned; so these modules import neither
torch nor transformers at the top (planning a matrix stays a fraction of a second): what builds
or runs a model imports them inside the method, when a trial runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    import torch
    from transformers import BertConfig, PreTrainedModel

    from bertabl.trial.pretrain import ModelConfig


class PretrainObjective:
    """One pre-training objective; the defaults are the masked LM's."""

    name: ClassVar[str]
    # False: the model as initialised from the trial's seed, saved like a trained one (reads no
    # corpus, takes no step)
    pretrains: ClassVar[bool] = True
    # True: predicts the positions the masking config chooses (masking.py), and the loop decodes
    # the vocabulary at those alone (batches carry them); False: predicts every next token
    masks: ClassVar[bool] = True
    # trains next-sentence prediction: batches carry each pair's IsNext label, the loop logs
    # nsp_loss / nsp_acc, the held-out pass heldout_nsp_acc
    nsp: ClassVar[bool] = False
    # the model carries BERT's pooler and NSP head (matrix/compute.py bert_parameters counts them)
    nsp_head: ClassVar[bool] = False
    # attention is left-to-right, and stays so when fine-tuned (matrix/checks.py: no [CLS] tasks)
    causal: ClassVar[bool] = False
    # the transformers class of its model, with the heads it trains (a name: planning imports no
    # transformers)
    model_class: ClassVar[str]

    @property
    def reads_corpus(self) -> bool:
        return self.pretrains

    def build_model(
        self, model: ModelConfig, vocab_size: int, pad_token_id: int
    ) -> PreTrainedModel:
        """A freshly initialised model (seeded by the caller) with the heads it trains."""
        from bertabl.pretrain.model import bert_config

        return self.model(bert_config(model, vocab_size, pad_token_id))

    def model(self, config: BertConfig) -> PreTrainedModel:
        """transformers' model for this objective, built from `config`."""
        import transformers

        return getattr(transformers, self.model_class)(config)

    def training_module(self, model: PreTrainedModel, positions: int) -> torch.nn.Module:
        """What the training loop runs forward, given the positions of one micro-batch: the masked
        LM decodes the vocabulary at the masked positions only (MaskedPositionsLM)."""
        from bertabl.pretrain.model import MaskedPositionsLM

        return MaskedPositionsLM(model)

    def targets(self, labels: torch.Tensor) -> torch.Tensor:
        """What each position is trained to predict, from the masker's labels [rows, width]
        (the masked LM: the chosen tokens themselves)."""
        return labels

    def logged(self, metrics: dict[str, Any]) -> dict[str, Any]:
        """The loop's averaged training metrics under this objective's names (the loop keeps its
        language-model loss as mlm_loss and mlm_perplexity)."""
        return metrics
