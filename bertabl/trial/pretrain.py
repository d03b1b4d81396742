"""What a pre-training trial runs: the model, masking, schedule and optimizer settings, and the
corpus it reads. Validated once when the plan is built; trial bodies read attributes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from pydantic import Field, model_validator

from bertabl.trial.data import DataRef
from bertabl.trial.identity import trial_id
from bertabl.trial.strict import Strict

# Each name is an adapter in pretrain/objectives/ (one file each), which says what it trains.
Objective = Literal["mlm_nsp", "mlm", "ltr", "none"]
# The objective that trains nothing (pretrain/objectives/none.py). Named here, below pretrain/,
# because what it resets (UNTRAINED_DEFAULTS) is part of a trial's identity, defined here.
UNTRAINED: Objective = "none"
# What an untrained model does not depend on: reset to their defaults so every matrix's control
# row with the same model, vocabulary and seed is the same trial.
UNTRAINED_DEFAULTS = {
    "steps": 0,
    "masking": {},
    "seq_len_schedule": [],
    "heldout_fraction": 0.0,
    "warmup_fraction": 0.01,
    "weight_decay": 0.01,
    "adam_beta1": 0.9,
    "adam_beta2": 0.999,
    "adam_epsilon": 1e-6,
    "learning_rate": 1.0,  # never used; a fixed value so it is not part of what differs
}


class ModelConfig(Strict):
    """Transformer size. `intermediate` defaults to 4 x hidden, as in BERT."""

    layers: int = Field(ge=1, description="number of Transformer layers (#L)")
    hidden: int = Field(ge=1, description="hidden size (#H)")
    heads: int = Field(ge=1, description="attention heads (#A); must divide hidden")
    intermediate: int | None = Field(None, ge=1, description="feed-forward size; 4*hidden")
    dropout: float = Field(0.1, ge=0, lt=1, description="dropout on all layers")
    max_position: int = Field(512, ge=1, description="position embeddings")

    @model_validator(mode="after")
    def _heads_divide_hidden(self) -> ModelConfig:
        if self.hidden % self.heads:
            raise ValueError(
                f"heads ({self.heads}) must divide hidden ({self.hidden}); "
                f"e.g. heads = {_divisor_near(self.hidden, self.heads)}"
            )
        return self

    @property
    def ffn(self) -> int:
        return self.intermediate or 4 * self.hidden


class MaskingConfig(Strict):
    """Which positions the MLM predicts, and what the chosen positions become (Table 8)."""

    probability: float = Field(0.15, gt=0, lt=1, description="fraction of tokens chosen")
    mask: float = Field(0.8, ge=0, le=1, description="chosen -> [MASK]")
    random: float = Field(0.1, ge=0, le=1, description="chosen -> random token")
    same: float = Field(0.1, ge=0, le=1, description="chosen -> left unchanged")
    whole_word: bool = Field(
        False,
        description="choose whole words (a WordPiece token and its ## continuations) instead of "
        "single tokens; the mask/random/same split still applies per token",
    )

    @model_validator(mode="after")
    def _split_sums_to_one(self) -> MaskingConfig:
        total = self.mask + self.random + self.same
        if abs(total - 1.0) > 1e-6:
            raise ValueError(
                f"mask + random + same must sum to 1 (got {self.mask} + {self.random} + "
                f"{self.same} = {total:g})"
            )
        return self


class SeqLenPhase(Strict):
    """One phase of a sequence-length schedule."""

    seq_len: int = Field(ge=16, le=4096, description="tokens per example in this phase")
    fraction: float = Field(gt=0, le=1, description="fraction of pretrain.steps in this phase")


class PretrainConfig(Strict):
    """One fully specified pre-training run (what a pre-training trial executes)."""

    objective: Objective = Field(
        description="mlm_nsp (BERT), mlm (No NSP), ltr (left-to-right LM, no NSP; stays causal "
        "when fine-tuned), none (no pre-training: the same architecture randomly initialised, "
        "the control row that shows what pre-training buys; steps and the training settings "
        "do not apply)"
    )
    model: ModelConfig
    masking: MaskingConfig = MaskingConfig()
    steps: int = Field(ge=0, description="optimizer steps (0 only with objective = 'none')")
    batch_size: int = Field(ge=1)
    max_seq_len: int = Field(ge=16, le=4096, description="tokens per example, incl. specials")
    seq_len_schedule: list[SeqLenPhase] = Field(
        default_factory=list,
        description="phases of (seq_len, fraction of steps) in order; the paper: 90% of steps at "
        "128, then 10% at 512. The last phase's seq_len must be max_seq_len. Empty = "
        "max_seq_len throughout",
    )
    vocab_size: int = Field(
        0,
        ge=0,
        description="size of the WordPiece vocabulary trained on the corpus when data.tokenizer "
        "= 'train' (an axis like any other); leave 0 for any other tokenizer",
    )
    heldout_fraction: float = Field(
        0.02,
        ge=0,
        lt=0.5,
        description="fraction of corpus documents held out of training (at least 2 when > 0); "
        "the trial reports held-out MLM (or LTR) perplexity on them (Table 6's LM ppl)",
    )
    heldout_examples: int = Field(
        1000, ge=1, description="at most this many held-out examples are scored"
    )
    learning_rate: float = Field(gt=0)
    warmup_fraction: float = Field(0.01, ge=0, lt=1, description="linear warmup, then decay")
    weight_decay: float = Field(0.01, ge=0)
    adam_beta1: float = Field(0.9, ge=0, lt=1)
    adam_beta2: float = Field(0.999, ge=0, lt=1)
    adam_epsilon: float = Field(1e-6, gt=0)
    seed: int = 0

    @model_validator(mode="before")
    @classmethod
    def _untrained_trains_nothing(cls, data):
        if isinstance(data, dict) and data.get("objective") == UNTRAINED:
            return {**data, **UNTRAINED_DEFAULTS}
        return data

    @model_validator(mode="after")
    def _steps_train(self) -> PretrainConfig:
        if self.steps == 0 and not self.untrained:
            raise ValueError(
                f"steps = 0 trains nothing; give steps >= 1, or objective = 'none' for a "
                f"randomly initialised control row (objective is '{self.objective}')"
            )
        return self

    @model_validator(mode="after")
    def _fits_positions(self) -> PretrainConfig:
        if self.max_seq_len > self.model.max_position:
            raise ValueError(
                f"max_seq_len ({self.max_seq_len}) exceeds model.max_position "
                f"({self.model.max_position})"
            )
        return self

    @model_validator(mode="after")
    def _schedule_is_whole(self) -> PretrainConfig:
        if not self.seq_len_schedule:
            return self
        total = sum(p.fraction for p in self.seq_len_schedule)
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"seq_len_schedule fractions must sum to 1 (got {total:g})")
        if self.seq_len_schedule[-1].seq_len != self.max_seq_len:
            raise ValueError(
                f"seq_len_schedule ends at seq_len {self.seq_len_schedule[-1].seq_len}, but "
                f"max_seq_len is {self.max_seq_len}; make the last phase's seq_len max_seq_len, "
                "or set seq_len_schedule = [] to train at max_seq_len throughout"
            )
        too_long = [p.seq_len for p in self.seq_len_schedule if p.seq_len > self.max_seq_len]
        if too_long:
            raise ValueError(
                f"seq_len_schedule has seq_len {too_long[0]} > max_seq_len ({self.max_seq_len})"
            )
        return self

    @property
    def untrained(self) -> bool:
        """The model as initialised: no step taken, no corpus read (objective = 'none')."""
        return self.objective == UNTRAINED

    def phases(self) -> list[tuple[int, int]]:
        """[(last step of the phase, seq_len)] of this run (see `seq_len_phases`)."""
        return seq_len_phases(self.steps, self.max_seq_len, self.seq_len_schedule)

    @property
    def tokens(self) -> int:
        """Tokens the run trains on: batch size x the sequence length of every step."""
        ends = self.phases()
        starts = [0, *(end for end, _ in ends[:-1])]
        return self.batch_size * sum(
            (end - start) * seq_len for (end, seq_len), start in zip(ends, starts, strict=True)
        )


def seq_len_phases(
    steps: int, max_seq_len: int, schedule: Sequence[SeqLenPhase]
) -> list[tuple[int, int]]:
    """[(last step of the phase, seq_len)] covering steps 1..steps in order (empty schedule =
    max_seq_len throughout). Phases that round to no steps are dropped."""
    ends, done, previous = [], 0.0, 0
    for phase in schedule or [SeqLenPhase(seq_len=max_seq_len, fraction=1.0)]:
        done += phase.fraction
        end = min(steps, round(done * steps))
        if end > previous:
            ends.append((end, phase.seq_len))
            previous = end
    if ends:
        ends[-1] = (steps, ends[-1][1])
    return ends or [(steps, max_seq_len)]


# How pre-training turns the corpus into batches; part of every pre-training trial's id, so a
# change that moves results gives new trials rather than mixing old records with new ones.
# 1: every pass's pairs of the whole corpus built in memory and shuffled, masks from one
#    generator over each padded global batch;
# 2: pairs drawn lazily from the token store (a document permutation per pass, shuffled in
#    blocks), masks keyed by example (pretrain/pairs.py, masking.py).
DATA_FORMAT = 2


class PretrainTrialConfig(Strict):
    """A pre-training trial: the resolved pre-training settings and the corpus + tokenizer."""

    stage: Literal["pretrain"] = "pretrain"
    pretrain: PretrainConfig
    data: DataRef
    data_format: int = Field(DATA_FORMAT, description="how the corpus becomes batches")

    @property
    def id(self) -> str:
        return trial_id("pt", self.model_dump(mode="json"))

    @property
    def trained_vocabulary(self) -> bool:
        """Whether the tokenizer is a WordPiece vocabulary trained on the corpus."""
        tokenizer = self.data.identity["tokenizer"]  # a DataRef identity is the source's dict
        return isinstance(tokenizer, dict) and "trained" in tokenizer


def _divisor_near(n: int, k: int) -> int:
    divisors = [d for d in range(1, n + 1) if n % d == 0]
    return min(divisors, key=lambda d: (abs(d - k), d))
