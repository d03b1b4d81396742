"""Pre-training speed: bertabl's pre-training body vs HF `BertForPreTraining` + `Trainer`.

    python -m bench.pretrain                         # Gutenberg + BERT vocab (else synthetic)
    python -m bench.pretrain --device cuda --model base --steps 200 --batch-size 256

Both train MLM + NSP for the same number of steps from the same seed, with the same model size,
corpus, tokenizer, batch size (sequences), sequence length and optimizer settings:
  bertabl  `bertabl.pretrain.train.pretrain`: pairs filled to max_seq_len as BERT's
           create_pretraining_data does, the vocabulary decoded only at masked positions
  hf       `BertForPreTraining` + `DataCollatorForLanguageModeling` + `Trainer`, on pairs of
           consecutive segments (half with a random B) padded to max_seq_len: a common HF setup
Throughput = non-padding tokens / seconds of training (tokenising is outside the timed part for
both). Tokens are counted as the encoder sees them (the attention mask), on the device, so the
count adds no host sync. With `--model base` on a GPU it also prints MFU = 6 x parameters x
tokens/s / the device's peak (`--peak-tflops`). The last line is bertabl's tokens/s over hf's.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

import torch

from bench.common import (
    add_common_args,
    build,
    data_section,
    model_section,
    ratio_line,
    resolved_precision,
    setup,
    use_shared,
)

MODELS = {"tiny": (2, 128), "base": (12, 768)}
LOSS = {"bertabl": "mean of the last logged window", "hf": "mean over the run"}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(parser)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-seq-len", type=int, default=128)
    parser.add_argument("--learning-rate", type=float, default=1e-4)
    parser.add_argument("--model", choices=list(MODELS), default="tiny")
    parser.add_argument("--repeats", type=int, default=1, help="round-robin repeats; best")
    parser.add_argument(
        "--peak-tflops", type=float, default=989.0, help="device peak (H100 SXM bf16 dense: 989)"
    )
    parser.add_argument("--only", nargs="*", default=["bertabl", "hf"], help="runs to do")
    args = parser.parse_args(argv)
    device = setup(args)
    precision = resolved_precision(args, device)
    layers, hidden = MODELS[args.model]
    raw = {
        "name": "bench-pretrain",
        "data": data_section(use_shared(args)),
        "pretrain": {
            "objective": "mlm_nsp",
            "model": model_section(layers, hidden) | {"dropout": 0.1},
            "steps": args.steps,
            "batch_size": args.batch_size,
            "max_seq_len": args.max_seq_len,
            "learning_rate": args.learning_rate,
            "seed": args.seed,
            # Train on the whole corpus, as the baseline does, and skip the held-out perplexity
            # pass at the end (the baseline has none; it would be timed as training otherwise)
            "heldout_fraction": 0.0,
        },
        "finetune": {"tasks": ["sst2" if use_shared(args) else "syn_agree"]},  # unused
    }
    config = build(raw).pretrain[0].config
    corpus = "gutenberg" if use_shared(args) else "synthetic"
    print(
        f"MLM+NSP on {corpus}: {args.steps} steps x {args.batch_size} sequences of <= "
        f"{args.max_seq_len} tokens, model {layers}x{hidden}, precision {precision}, "
        f"seed {args.seed}"
    )
    counter = TokenCounter()
    runs: dict[str, list[float]] = {name: [] for name in args.only}
    with tempfile.TemporaryDirectory() as tmp:
        bodies = {
            "bertabl": lambda: _bertabl(config, Path(tmp), device, precision),
            "hf": lambda: _hf(config, Path(tmp), device, precision),
        }
        for repeat in range(args.repeats):
            for name in args.only:
                counter.reset(device)
                seconds, loss, params = bodies[name]()
                tokens = counter.total()
                runs[name].append(tokens / seconds)
                fill = tokens / (args.steps * args.batch_size * args.max_seq_len)
                print(
                    f"{name:8s} repeat {repeat}: {tokens / seconds:9.0f} non-padding tokens/s "
                    f"({tokens} tokens, {fill:.0%} of the padded batch, in {seconds:.2f} s), "
                    f"loss {loss:.4f} ({LOSS[name]})"
                )
                if device.type == "cuda":
                    mfu = 6 * params * tokens / seconds / (args.peak_tflops * 1e12)
                    print(f"{name:8s} MFU {mfu:.1%} (6 x {params / 1e6:.1f}M params x tokens/s)")
    counter.remove()
    best = {name: max(values) for name, values in runs.items()}
    for name, value in best.items():
        print(f"{name:8s} best {value:9.0f} non-padding tokens/s")
    if len(best) == 2:
        print(ratio_line("bertabl / hf (non-padding tokens/s)", best["bertabl"], best["hf"]))


class TokenCounter:
    """Sums the attention mask of every training-mode `BertModel` forward, on the device (no
    host sync). It wraps `BertModel.forward` for the bench's lifetime, so it sees both runs'
    models without touching their code."""

    def __init__(self) -> None:
        from transformers import BertModel

        self.count = torch.zeros((), dtype=torch.long)
        self.original = original = BertModel.forward
        counter = self

        def forward(module, input_ids=None, attention_mask=None, *args, **kwargs):
            if module.training:
                counter.count += (
                    attention_mask.sum() if attention_mask is not None else input_ids.numel()
                )
            return original(module, input_ids, attention_mask, *args, **kwargs)

        BertModel.forward = forward

    def reset(self, device: torch.device) -> None:
        self.count = torch.zeros((), dtype=torch.long, device=device)

    def total(self) -> int:
        return int(self.count)

    def remove(self) -> None:
        from transformers import BertModel

        BertModel.forward = self.original


def _bertabl(config, tmp: Path, device, precision: str):
    from bertabl.pretrain.train import pretrain
    from bertabl.training import TrialRuntime

    reports: list[dict] = []
    runtime = TrialRuntime(device, report=lambda m: reports.append(m), precision=precision)
    metrics = pretrain(config, tmp / "bertabl", runtime)
    params = sum(p.numel() for p in _load(tmp / "bertabl" / "model").parameters())
    # The body's "seconds" run from the first step to after saving the final model.
    return reports[-1]["seconds"], metrics["loss"], params


def _load(directory: Path):
    from transformers import BertForPreTraining

    return BertForPreTraining.from_pretrained(directory)


def _hf(config, tmp: Path, device, precision: str):
    import datasets
    from transformers import (
        BertForPreTraining,
        DataCollatorForLanguageModeling,
        PrinterCallback,
        Trainer,
        TrainingArguments,
    )

    from bertabl.data.corpus import load_corpus
    from bertabl.data.tokenizer import build_tokenizer
    from bertabl.pretrain.model import bert_config

    pt = config.pretrain
    tokenizer = build_tokenizer(config.data, tmp / "hf-vocab")
    documents = [
        tokenizer(doc, add_special_tokens=False)["input_ids"] for doc in load_corpus(config.data)
    ]
    pairs = _segment_pairs(documents, pt.seed)
    needed = pt.steps * pt.batch_size
    pairs = (pairs * (needed // len(pairs) + 1))[:needed]  # enough for max_steps, no epoch end
    rows = [_padded_pair(a, b, label, tokenizer, pt.max_seq_len) for a, b, label in pairs]
    train = datasets.Dataset.from_list(rows)
    torch.manual_seed(pt.seed)
    model = BertForPreTraining(bert_config(pt.model, len(tokenizer), tokenizer.pad_token_id))
    masking = pt.masking
    collator = DataCollatorForLanguageModeling(
        tokenizer,
        mlm_probability=masking.probability,
        mask_replace_prob=masking.mask,
        random_replace_prob=masking.random,
    )
    args = TrainingArguments(
        output_dir=str(tmp / "hf"),
        per_device_train_batch_size=pt.batch_size,
        max_steps=pt.steps,
        learning_rate=pt.learning_rate,
        weight_decay=pt.weight_decay,
        warmup_steps=int(round(pt.warmup_fraction * pt.steps)),
        adam_beta1=pt.adam_beta1,
        adam_beta2=pt.adam_beta2,
        adam_epsilon=pt.adam_epsilon,
        max_grad_norm=1.0,
        save_strategy="no",
        logging_strategy="steps",
        logging_steps=pt.steps,
        report_to=[],
        disable_tqdm=True,
        seed=pt.seed,
        use_cpu=device.type == "cpu",
        bf16=precision == "bf16",
        dataloader_pin_memory=device.type == "cuda",
    )
    trainer = Trainer(model=model, args=args, train_dataset=train, data_collator=collator)
    trainer.remove_callback(PrinterCallback)
    started = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - started
    loss = [e["loss"] for e in trainer.state.log_history if "loss" in e][-1]
    return seconds, loss, sum(p.numel() for p in model.parameters())


def _padded_pair(a: list[int], b: list[int], label: int, tokenizer, max_len: int) -> dict:
    """[CLS] A [SEP] B [SEP] truncated longest-first and padded to `max_len`, with the special
    tokens marked (what `tokenizer(a, b, padding="max_length", truncation=True,
    return_special_tokens_mask=True)` returns for text; here the ids are already tokenised)."""
    a, b = list(a), list(b)
    while len(a) + len(b) > max_len - 3:
        (a if len(a) > len(b) else b).pop()
    ids = [tokenizer.cls_token_id, *a, tokenizer.sep_token_id, *b, tokenizer.sep_token_id]
    pad = max_len - len(ids)
    return {
        "input_ids": ids + [tokenizer.pad_token_id] * pad,
        "token_type_ids": [0] * (len(a) + 2) + [1] * (len(b) + 1) + [0] * pad,
        "attention_mask": [1] * len(ids) + [0] * pad,
        "special_tokens_mask": [1] + [0] * len(a) + [1] + [0] * len(b) + [1] + [1] * pad,
        "next_sentence_label": label,
    }


def _segment_pairs(documents: list[list[list[int]]], seed: int) -> list[tuple[list, list, int]]:
    """(A, B, label): consecutive segments of a document (label 0 = IsNext), or, half the time,
    A with a random segment of another document (1 = NotNext), as HF's former
    TextDatasetForNextSentencePrediction did before it was removed."""
    rng = random.Random(seed)
    pairs = []
    for index, document in enumerate(documents):
        for i in range(len(document) - 1):
            if rng.random() < 0.5:
                pairs.append((document[i], document[i + 1], 0))
            else:
                other = rng.randrange(len(documents) - 1)
                other += other >= index  # any document but this one
                pairs.append((document[i], rng.choice(documents[other]), 1))
    rng.shuffle(pairs)
    return pairs


if __name__ == "__main__":
    main()
