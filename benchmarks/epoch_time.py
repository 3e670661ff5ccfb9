"""Seconds per training epoch: the pack's per-batch padding against padding to 256 tokens.

Setup: GPT-2 small shapes (random weights), LoRA rank 8, alpha 16 on every Linear but the
head, a 2-class head, AdamW, batch 8, the real 1,045-message training split (131 batches).
Both pipelines see the same messages in the same order; only the padding differs. To finish
in minutes on a CPU, the same evenly spaced sample of batches is timed for both (alternating
pipelines, after one warm-up step each) and the mean extrapolated to a whole epoch. The
eval-mode logits of both paddings are compared first.

    python benchmarks/epoch_time.py --threads 2      # after `pip install -r requirements.txt`
    python -m benchmarks.epoch_time --threads 2      # from the repository root, without it
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import torch

from autograder.solutions import (
    last_token_logits,
    lora_gpt_classifier,
    make_optimizer,
    train_step,
)
from helpers.env_info import set_seed
from helpers.gpt import GPTModel, gpt_config
from helpers.params import trainable_parameters_line
from helpers.spam_data import SpamBatch, spam_loaders

REPO = Path(__file__).resolve().parent.parent
DEFAULT_SMS = REPO.parent / "shared" / "data" / "SMSSpamCollection"
FIXED_LENGTH = 256
LOGITS_ATOL = 1e-4


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sms", type=Path, default=DEFAULT_SMS,
                        help="the SMSSpamCollection file (default: %(default)s)")
    parser.add_argument("--batches", type=int, default=20,
                        help="training batches timed per pipeline (default: %(default)s)")
    parser.add_argument("--check-batches", type=int, default=3,
                        help="batches whose eval-mode logits are compared (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--seed", type=int, default=123)
    return parser.parse_args()


def max_logit_difference(model: GPTModel, pairs: list[tuple[SpamBatch, SpamBatch]]) -> float:
    """Largest |difference| of eval-mode class logits between the two paddings."""
    model.eval()
    worst = 0.0
    with torch.no_grad():
        for short, fixed in pairs:
            a = last_token_logits(model(short.input_ids), short.last_idx)
            b = last_token_logits(model(fixed.input_ids), fixed.last_idx)
            worst = max(worst, (a - b).abs().max().item())
    model.train()
    return worst


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    set_seed(args.seed)
    loader = spam_loaders(8, args.seed, path=args.sms).train
    fixed_loader = spam_loaders(8, args.seed, path=args.sms, pad_to=FIXED_LENGTH).train
    pipelines = {"padding per batch (pack)": list(loader),
                 f"pad to {FIXED_LENGTH} (original lab)": list(fixed_loader)}
    short, padded = pipelines.values()
    assert all(torch.equal(a.labels, b.labels) for a, b in zip(short, padded))
    n_batches = len(short)
    sample = sorted({round(i * (n_batches - 1) / max(args.batches - 1, 1))
                     for i in range(args.batches)})

    model = lora_gpt_classifier(gpt_config("124M"))
    print(f"{platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    print(f"GPT-2 124M + LoRA r=8 + head: {trainable_parameters_line(model)}")
    print(f"training split: {len(loader.dataset)} messages, {n_batches} batches of 8; "
          f"timing {len(sample)} of them per pipeline\n")

    checked = [(short[i], padded[i]) for i in sample[:args.check_batches]]
    diff = max_logit_difference(model, checked)
    print(f"eval-mode logits, per-batch padding vs {FIXED_LENGTH}, {len(checked)} batches: "
          f"max |diff| = {diff:.2e}")
    assert diff < LOGITS_ATOL, f"logits differ by {diff} (tolerance {LOGITS_ATOL})"

    optimizers = {name: make_optimizer(model) for name in pipelines}
    for name, batches in pipelines.items():  # warm-up (allocations, AdamW state)
        train_step(model, batches[sample[0]], optimizers[name])
    seconds = {name: [] for name in pipelines}
    for i in sample:
        for name, batches in pipelines.items():
            start = time.perf_counter()
            train_step(model, batches[i], optimizers[name])
            seconds[name].append(time.perf_counter() - start)

    print(f"\n| pipeline | padded tokens per batch (epoch mean) | s/batch | s/epoch ({n_batches} "
          "batches, estimate) |")
    print("| --- | ---: | ---: | ---: |")
    per_epoch = {}
    for name, batches in pipelines.items():
        tokens = sum(b.input_ids.numel() for b in batches) / n_batches
        per_batch = sum(seconds[name]) / len(seconds[name])
        per_epoch[name] = per_batch * n_batches
        print(f"| {name} | {tokens:,.0f} | {per_batch:.2f} | {per_epoch[name]:.0f} |")
    fast, slow = per_epoch.values()
    print(f"\nspeed-up of padding per batch: {slow / fast:.1f}x")


if __name__ == "__main__":
    main()
