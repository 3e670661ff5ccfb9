"""Same results, faster: logits and training outcomes of the fast settings against the original.

1. Logits (GPT-2 small shapes, random weights, LoRA rank 8 with a non-zero B so that every
   path matters, eval mode) on the whole 149-message validation split, per message:
   - float32, padded per batch and length-bucketed, against padding to 256 (the original lab),
     on the first 64 messages (padding to 256 is slow);
   - merged LoRA weights (`helpers.lora_merge`) against the LoRA layers;
   - bf16 autocast (with the frozen weights kept in bf16, as `train_classifier` does)
     against float32: largest difference, predictions that change, loss.
2. With `--training`: short trainings of a small GPT (4 layers, 128 wide, random weights, LoRA
   rank 8, 3 epochs on the real training split) for several seeds, in float32 and in bf16 with
   random batches, and in float32 with length-bucketed batches: per-batch loss differences
   and the test accuracy reached.

    python -m benchmarks.parity --threads 2 [--training --seeds 4]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from autograder.solutions import (
    last_token_logits,
    lora_gpt_classifier,
    make_optimizer,
    train_step,
)
from helpers.gpt import GPTModel, gpt_config
from helpers.lora_merge import merged_lora
from helpers.spam_data import (
    LengthBucketSampler,
    SpamDataset,
    collate_spam,
    spam_loaders,
    spam_splits,
)
from helpers.precision import autocast_forward, frozen_weights_in, resolve_precision
from helpers.training import evaluate, train_classifier

REPO = Path(__file__).resolve().parent.parent
DEFAULT_SMS = REPO.parent / "shared" / "data" / "SMSSpamCollection"
SMALL_CFG = {"vocab_size": 50257, "context_length": 256, "emb_dim": 128, "n_heads": 4,
             "n_layers": 4, "drop_rate": 0.0, "qkv_bias": True}


def lora_classifier(cfg: dict, seed: int, trained_look: bool) -> GPTModel:
    """trained_look: non-zero LoRA B and a head with logits of order 1 (as after training),
    so that every path matters and differences are measured at a realistic scale."""
    model = lora_gpt_classifier(cfg, seed=seed)
    if trained_look:
        for name, param in model.named_parameters():
            if name.endswith("lora.B"):
                nn.init.normal_(param, std=0.02)
        nn.init.normal_(model.out_head.weight, std=model.out_head.in_features ** -0.5)
    return model


def per_message_logits(model, dataset: SpamDataset, batches: list[list[int]],
                       pad_to: int | None = None) -> torch.Tensor:
    """Class logits of every message, in dataset order, computed in the given batches."""
    out = torch.empty(len(dataset), 2)
    with torch.no_grad():
        for indices in batches:
            batch = collate_spam([dataset[i] for i in indices], pad_to=pad_to)
            out[indices] = last_token_logits(model(batch.input_ids), batch.last_idx).float()
    return out


def logits_parity(sms: Path) -> None:
    dataset = SpamDataset(spam_splits(path=sms).validation)
    labels = torch.tensor(dataset.labels)
    in_order = [list(range(i, min(i + 8, len(dataset)))) for i in range(0, len(dataset), 8)]
    bucketed = list(LengthBucketSampler(dataset.lengths(), 8, shuffle=False))
    model = lora_classifier(gpt_config("124M"), seed=123, trained_look=True).eval()
    print(f"GPT-2 124M shapes, random weights, LoRA r=8 with non-zero B, head with logits of "
          f"order 1, eval mode; {len(dataset)} validation messages, batches of 8\n")
    first = 64
    start = time.perf_counter()
    original = per_message_logits(model, dataset, in_order[:first // 8], pad_to=256)[:first]
    seconds_original = time.perf_counter() - start
    reference = per_message_logits(model, dataset, in_order)
    bucketed_fp32 = per_message_logits(model, dataset, bucketed)
    rows = [(f"fp32, padding per batch vs pad to 256 (first {first})", reference[:first],
             original, labels[:first]),
            (f"fp32, length-bucketed vs pad to 256 (first {first})", bucketed_fp32[:first],
             original, labels[:first])]
    with merged_lora(model) as handle:
        merged = per_message_logits(model, dataset, in_order)
    rows.append((f"fp32, merged LoRA ({handle.count} layers) vs LoRA layers", merged, reference,
                 labels))
    bf16 = resolve_precision("bf16", "cpu")
    with frozen_weights_in(model, torch.bfloat16), autocast_forward(model, bf16, "cpu"):
        start = time.perf_counter()
        low = per_message_logits(model, dataset, bucketed)
        seconds_low = time.perf_counter() - start
    rows.append(("bf16 autocast + bf16 frozen weights, bucketed vs fp32", low, reference, labels))

    print("| comparison | max abs diff of class logits | mean abs diff | predictions changed "
          "| loss (vs reference) |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, a, b, y in rows:
        diff = (a - b).abs()
        flipped = a.argmax(-1) != b.argmax(-1)
        changed = f"{int(flipped.sum())} of {len(y)}"
        if flipped.any():  # how close to a tie those messages were in the reference
            margin = (b[flipped, 1] - b[flipped, 0]).abs().max().item()
            changed += f" (reference margins <= {margin:.3f})"
        loss_a, loss_b = F.cross_entropy(a, y).item(), F.cross_entropy(b, y).item()
        print(f"| {name} | {diff.max().item():.2e} | {diff.mean().item():.2e} | "
              f"{changed} | {loss_a:.5f} ({loss_b:.5f}) |")
    print(f"\nlogit scale: max |logit| {reference.abs().max().item():.2f}, mean "
          f"{reference.abs().mean().item():.2f}. Inference time: pad to 256, fp32, {first} "
          f"messages {seconds_original:.1f} s; bucketed bf16, {len(dataset)} messages "
          f"{seconds_low:.1f} s")


def train_once(sms: Path, seed: int, precision: str, bucket: bool) -> dict:
    loaders = spam_loaders(8, 123, path=sms, bucket=bucket)
    model = lora_classifier(SMALL_CFG, seed=seed, trained_look=False)
    optimizer = make_optimizer(model, lr=5e-4, weight_decay=0.1)
    history = train_classifier(model, loaders.train, loaders.validation, optimizer, 3,
                               step_fn=train_step, logits_fn=last_token_logits, seed=seed,
                               device="cpu", progress=False, precision=precision)
    test_loss, test_acc = evaluate(loaders.test, model, last_token_logits)
    return {"history": history, "test_acc": test_acc, "test_loss": test_loss}


def training_parity(sms: Path, seeds: int) -> None:
    print(f"\nSmall GPT ({SMALL_CFG['n_layers']} layers, {SMALL_CFG['emb_dim']} wide, random "
          f"weights), LoRA r=8, AdamW 5e-4, 3 epochs of the 1,045 training messages, "
          f"seeds 1-{seeds}; test accuracy measured in fp32 on the 300 test messages\n")
    runs = {key: [] for key in ("fp32", "bf16", "fp32 bucketed")}
    for seed in range(1, seeds + 1):
        runs["fp32"].append(train_once(sms, seed, "fp32", False))
        runs["bf16"].append(train_once(sms, seed, "bf16", False))
        runs["fp32 bucketed"].append(train_once(sms, seed, "fp32", True))
    loss_diffs = [max(abs(a - b) for a, b in zip(r32["history"].batch_loss,
                                                 r16["history"].batch_loss))
                  for r32, r16 in zip(runs["fp32"], runs["bf16"])]
    final = [abs(r32["history"].train_loss[-1] - r16["history"].train_loss[-1])
             for r32, r16 in zip(runs["fp32"], runs["bf16"])]
    print("| run | test accuracy per seed | mean (sd) | final train loss, mean |")
    print("| --- | --- | ---: | ---: |")
    for key, results in runs.items():
        accs = [r["test_acc"] for r in results]
        losses = [r["history"].train_loss[-1] for r in results]
        sd = statistics.stdev(accs) if len(accs) > 1 else 0.0
        print(f"| {key} | {', '.join(f'{a:.3f}' for a in accs)} | "
              f"{statistics.mean(accs):.3f} ({sd:.3f}) | {statistics.mean(losses):.4f} |")
    print(f"\nbf16 vs fp32, same seed and batches: largest per-batch loss difference over "
          f"{len(runs['fp32'][0]['history'].batch_loss)} steps {max(loss_diffs):.4f}; "
          f"end-of-training train loss differs by at most {max(final):.4f}")
    homogeneous = sum(int(b.labels.min() == b.labels.max())
                      for b in spam_loaders(8, 123, path=sms, bucket=True).train)
    plain = sum(int(b.labels.min() == b.labels.max())
                for b in spam_loaders(8, 123, path=sms).train)
    print(f"single-class batches in an epoch: {homogeneous} of 131 bucketed, {plain} of 131 "
          "with random batches (spam messages are longer than ham: sorting by length sorts "
          "by label too)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sms", type=Path, default=DEFAULT_SMS)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--training", action="store_true", help="also compare trainings")
    parser.add_argument("--seeds", type=int, default=4)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    logits_parity(args.sms)
    if args.training:
        training_parity(args.sms, args.seeds)


if __name__ == "__main__":
    main()
