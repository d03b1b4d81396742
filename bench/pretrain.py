"""Pre-training speed: bertabl's pre-training body vs HF `BertForPreTraining` + `Trainer`.

    python -m bench.pretrain                         # Gutenberg + BERT vocab (else synthetic)
    python -m bench.pretrain --device cuda --model base --steps 200 --batch-size 256

Both train MLM + NSP for the same number of steps from the same seed, with the same model size,
corpus, tokenizer, batch size (sequences), sequence length and optimizer settings:
  bertabl  `bertabl.pretrain.step_loop.pretrain`: pairs filled to max_seq_len as BERT's
           create_pretraining_data does, the vocabulary decoded only at masked positions
  hf       `BertForPreTraining` + `DataCollatorForLanguageModeling` + `Trainer`, on pairs of
           consecutive segments (half with a random B) padded to max_seq_len: a common HF setup
Throughput = non-padding tokens / seconds of training (tokenising and saving the model are
outside the timed part for both). Tokens are counted as the encoder sees them (the attention
mask), on the device, so the count adds no host sync. On a GPU each side first runs
`--warmup-steps` untimed steps (CUDA context, kernels, allocator), and it prints the TFLOPS
achieved and MFU: FLOPs counted for the shapes that ran (bench/mfu.py: attention at each
batch's length, the vocabulary projection at the positions each side decodes) over the detected
GPU's dense bf16 peak (`--peak-tflops` overrides).

Quality beside speed: each side runs for `--seeds` seeds (round-robin), and both final models
are scored on one fixed set of MLM + NSP examples (`--eval-pairs` segment pairs of the corpus,
masked once with a fixed seed, the same tensors for every model): masked-token cross-entropy
and NSP accuracy, mean ± std over seeds, and whether the two sides differ beyond the seed
spread. The last line is bertabl's tokens/s over hf's (best of each).
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from pathlib import Path

import torch

from bench.common import (
    add_common_args,
    build,
    cuda_sync,
    data_section,
    model_section,
    quality_line,
    ratio_line,
    resolved_precision,
    setup,
    use_shared,
)
from bench.mfu import Shapes, detected_peak, training_flops

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
    parser.add_argument("--seeds", type=int, default=3, help="seeds per side (seed, seed+1, ...)")
    parser.add_argument(
        "--eval-pairs", type=int, default=256, help="pairs the models are scored on"
    )
    parser.add_argument(
        "--peak-tflops",
        type=float,
        default=None,
        help="device peak for MFU (default: the detected GPU's dense bf16 peak, bench/mfu.py)",
    )
    parser.add_argument(
        "--warmup-steps", type=int, default=None, help="untimed steps per side first (GPU: 10)"
    )
    parser.add_argument("--only", nargs="*", default=["bertabl", "hf"], help="runs to do")
    args = parser.parse_args(argv)
    device = setup(args)
    precision = resolved_precision(args, device)
    layers, hidden = MODELS[args.model]
    warmup = args.warmup_steps if args.warmup_steps is not None else 10 * (device.type == "cuda")
    configs = {
        seed: build(_matrix(args, layers, hidden, args.steps, seed)) for seed in _seeds(args)
    }
    warm = build(_matrix(args, layers, hidden, max(1, warmup), args.seed)).pretrain[0]
    corpus = "gutenberg" if use_shared(args) else "synthetic"
    print(
        f"MLM+NSP on {corpus}: {args.steps} steps x {args.batch_size} sequences of <= "
        f"{args.max_seq_len} tokens, model {layers}x{hidden}, precision {precision}, "
        f"seeds {args.seed}..{args.seed + args.seeds - 1}"
    )
    counter = TokenCounter()
    runs: dict[str, list[float]] = {name: [] for name in args.only}
    scores: dict[str, list[dict[str, float]]] = {name: [] for name in args.only}
    peak = args.peak_tflops
    if device.type == "cuda" and peak is None:
        peak = detected_peak(torch.cuda.get_device_name(device), precision)
    with tempfile.TemporaryDirectory() as tmp:
        bodies = {
            "bertabl": lambda c: _bertabl(c, Path(tmp), device, precision),
            "hf": lambda c: _hf(c, Path(tmp), device, precision),
        }
        if warmup:
            print(f"warm-up: {warmup} untimed steps per side")
            for name in args.only:
                bodies[name](warm.config)
        examples = _evaluation_examples(warm.config, Path(tmp), args.eval_pairs)
        for seed in _seeds(args):
            config = configs[seed].pretrain[0].config
            for name in args.only:
                counter.reset(device)
                seconds, loss, model = bodies[name](config)
                tokens = counter.total()
                runs[name].append(tokens / seconds)
                scores[name].append(_score(model, examples, device))
                fill = tokens / (args.steps * args.batch_size * args.max_seq_len)
                print(
                    f"{name:8s} seed {seed}: {tokens / seconds:9.0f} non-padding tokens/s "
                    f"({tokens} tokens, {fill:.0%} of the padded batch, in {seconds:.2f} s), "
                    f"loss {loss:.4f} ({LOSS[name]}); held-out MLM loss "
                    f"{scores[name][-1]['mlm_loss']:.4f}, NSP accuracy "
                    f"{scores[name][-1]['nsp_accuracy']:.4f}"
                )
                if device.type == "cuda":
                    print(f"{name:8s} {_utilisation(counter, layers, hidden, seconds, peak)}")
    counter.remove()
    best = {name: max(values) for name, values in runs.items()}
    for name, value in best.items():
        mlm = [s["mlm_loss"] for s in scores[name]]
        nsp = [s["nsp_accuracy"] for s in scores[name]]
        print(
            f"{name:8s} best {value:9.0f} non-padding tokens/s; held-out MLM loss "
            f"{_mean_std(mlm)}, NSP accuracy {_mean_std(nsp)}"
        )
    if len(best) == 2:
        for metric in ("mlm_loss", "nsp_accuracy"):
            a = [s[metric] for s in scores["bertabl"]]
            b = [s[metric] for s in scores["hf"]]
            print(quality_line(f"held-out {metric}", "bertabl", a, "hf", b))
        print(ratio_line("bertabl / hf (non-padding tokens/s)", best["bertabl"], best["hf"]))


def _seeds(args) -> range:
    return range(args.seed, args.seed + args.seeds)


def _matrix(args, layers: int, hidden: int, steps: int, seed: int) -> dict:
    return {
        "name": "bench-pretrain",
        "data": data_section(use_shared(args)),
        "pretrain": {
            "objective": "mlm_nsp",
            "model": model_section(layers, hidden) | {"dropout": 0.1},
            "steps": steps,
            "batch_size": args.batch_size,
            "max_seq_len": args.max_seq_len,
            "learning_rate": args.learning_rate,
            "seed": seed,
            # Train on the whole corpus, as the baseline does, and skip the held-out perplexity
            # pass at the end (the baseline has none; it would be timed as training otherwise)
            "heldout_fraction": 0.0,
        },
        "finetune": {"tasks": ["sst2" if use_shared(args) else "syn_agree"]},  # unused
    }


def _mean_std(values: list[float]) -> str:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.4f} ± {std:.4f}"


def _evaluation_examples(config, tmp: Path, pairs: int) -> dict[str, torch.Tensor]:
    """`pairs` segment pairs of the corpus (half NotNext), padded and masked once with a fixed
    seed by transformers' MLM collator: the tensors every model is scored on."""
    from transformers import DataCollatorForLanguageModeling

    tokenizer, documents = _tokenized_corpus(config, tmp / "eval-vocab")
    chosen = _segment_pairs(documents, seed=10_007)[:pairs]
    rows = [
        _padded_pair(a, b, label, tokenizer, config.pretrain.max_seq_len) for a, b, label in chosen
    ]
    masking = config.pretrain.masking
    collator = DataCollatorForLanguageModeling(
        tokenizer,
        mlm_probability=masking.probability,
        mask_replace_prob=masking.mask,
        random_replace_prob=masking.random,
        seed=10_007,
    )
    batch = collator(rows)
    batch["next_sentence_label"] = torch.tensor([r["next_sentence_label"] for r in rows])
    batch.pop("special_tokens_mask", None)
    return dict(batch)


@torch.no_grad()
def _score(model, examples: dict[str, torch.Tensor], device, batch_size: int = 64) -> dict:
    """Masked-token cross-entropy and NSP accuracy of a `BertForPreTraining` on `examples`."""
    model.to(device).eval()
    loss_sum = masked = correct = 0.0
    total = len(examples["input_ids"])
    for start in range(0, total, batch_size):
        part = {k: v[start : start + batch_size].to(device) for k, v in examples.items()}
        labels, nsp = part.pop("labels"), part.pop("next_sentence_label")
        out = model(**part)
        logits = out.prediction_logits.float()
        loss_sum += torch.nn.functional.cross_entropy(
            logits.view(-1, logits.shape[-1]), labels.view(-1), reduction="sum"
        ).item()
        masked += (labels != -100).sum().item()
        correct += (out.seq_relationship_logits.argmax(-1) == nsp).sum().item()
    return {"mlm_loss": loss_sum / masked, "nsp_accuracy": correct / total}


def _utilisation(counter: TokenCounter, layers: int, hidden: int, seconds: float, peak) -> str:
    flops = training_flops(counter.shapes, layers, hidden, 4 * hidden, counter.vocab)
    achieved = flops / seconds / 1e12
    if peak is None:
        return f"{achieved:.1f} TFLOPS (no known peak for this GPU and precision: --peak-tflops)"
    return f"MFU {achieved / peak:.1%} ({achieved:.1f} of {peak:g} TFLOPS, FLOPs of what ran)"


class TokenCounter:
    """Sums the attention mask of every training-mode `BertModel` forward, on the device (no
    host sync), and the shapes those passes computed (bench/mfu.py's FLOPs; shapes are host
    numbers). It wraps `BertModel.forward` and the MLM head's forward for the bench's lifetime,
    so it sees both runs' models without touching their code."""

    def __init__(self) -> None:
        from transformers import BertModel
        from transformers.models.bert.modeling_bert import BertLMPredictionHead

        self.count = torch.zeros((), dtype=torch.long)
        self.shapes, self.vocab = Shapes(), 0
        self.original = original = BertModel.forward
        self.original_head = original_head = BertLMPredictionHead.forward
        counter = self

        def forward(module, input_ids=None, attention_mask=None, *args, **kwargs):
            if module.training:
                counter.count += (
                    attention_mask.sum() if attention_mask is not None else input_ids.numel()
                )
                batch, length = input_ids.shape
                counter.shapes.sequences += batch
                counter.shapes.positions += batch * length
                counter.shapes.attention += batch * length * length
            return original(module, input_ids, attention_mask, *args, **kwargs)

        def head(module, hidden_states):
            if module.training:
                counter.shapes.decoded += hidden_states.shape[:-1].numel()
                counter.vocab = module.decoder.out_features
            return original_head(module, hidden_states)

        BertModel.forward = forward
        BertLMPredictionHead.forward = head

    def reset(self, device: torch.device) -> None:
        self.count = torch.zeros((), dtype=torch.long, device=device)
        self.shapes = Shapes()

    def total(self) -> int:
        return int(self.count)

    def remove(self) -> None:
        from transformers import BertModel
        from transformers.models.bert.modeling_bert import BertLMPredictionHead

        BertModel.forward = self.original
        BertLMPredictionHead.forward = self.original_head


def _bertabl(config, tmp: Path, device, precision: str):
    import bertabl.pretrain.step_loop as body
    from bertabl.training import TrialRuntime

    reports: list[dict] = []
    saving: list[float] = []
    save_model = body._save_model

    def timed_save(*args):  # the GPU's queued steps finish first: they count as training
        cuda_sync(device)
        started = time.perf_counter()
        save_model(*args)
        saving.append(time.perf_counter() - started)

    runtime = TrialRuntime(device, report=lambda m: reports.append(m), precision=precision)
    body._save_model = timed_save
    try:
        metrics = body.pretrain(config, tmp / "bertabl", runtime)
    finally:
        body._save_model = save_model
    # The body's "seconds" run from the first step to after saving the final model; the bench
    # times training, so the save is taken out (the baseline saves nothing).
    from transformers import BertForPreTraining

    from bertabl.trial.files import model_dir_name

    model = BertForPreTraining.from_pretrained(tmp / "bertabl" / model_dir_name())
    return reports[-1]["seconds"] - sum(saving), metrics["loss"], model


def _hf(config, tmp: Path, device, precision: str):
    import datasets
    from transformers import (
        BertForPreTraining,
        DataCollatorForLanguageModeling,
        PrinterCallback,
        Trainer,
        TrainingArguments,
    )

    from bertabl.pretrain.model import bert_config

    pt = config.pretrain
    tokenizer, documents = _tokenized_corpus(config, tmp / "hf-vocab")
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
        fp16=precision == "fp16",
        dataloader_pin_memory=device.type == "cuda",
    )
    trainer = Trainer(model=model, args=args, train_dataset=train, data_collator=collator)
    trainer.remove_callback(PrinterCallback)
    started = time.perf_counter()
    trainer.train()
    cuda_sync(device)
    seconds = time.perf_counter() - started
    loss = [e["loss"] for e in trainer.state.log_history if "loss" in e][-1]
    return seconds, loss, trainer.model


def _tokenized_corpus(config, vocab_dir: Path):
    """The run's tokenizer and its corpus as documents of tokenised segments."""
    from bertabl.data.corpus import load_corpus
    from bertabl.data.tokenizer import build_tokenizer

    tokenizer = build_tokenizer(config.data, vocab_dir)
    documents = [
        tokenizer(doc, add_special_tokens=False)["input_ids"] for doc in load_corpus(config.data)
    ]
    return tokenizer, documents


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
