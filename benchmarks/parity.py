"""Same results, faster: logits and training outcomes of the fast settings against the original.

1. Logits (GPT-2 small shapes, random weights, LoRA rank 8 with a non-zero B so that every
   path matters, eval mode) on the whole 149-message validation split, per message:
   - float32, padded per batch and length-bucketed, against padding to 256 (the original lab),
     on the first 64 messages (padding to 256 is slow); the defaults' batches (length-grouped,
     both classes in each) against padding per batch;
   - merged LoRA weights (`helpers.lora_merge`) and fused LoRA training layers
     (`helpers.fused_lora`) against the LoRA layers;
   - bf16 autocast (with the frozen weights kept in bf16, as `train_classifier` does; and with
     the fused layers, the fastest settings) against float32: largest difference,
     predictions that change, loss.
2. With `--training`: 3-epoch trainings of a small GPT (4 layers, 128 wide, random weights,
   LoRA rank 8, the real training split) for several seeds in every setting of `SETTINGS`:
   validation messages classified right against the fp32 run's, test accuracy, per-batch
   loss differences where the batches are the same.

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
from helpers.fused_lora import fused_lora
from helpers.gpt import GPTModel, gpt_config
from helpers.lora_merge import merged_lora
from helpers.precision import autocast_forward, frozen_weights_in, resolve_precision
from helpers.spam_data import (
    ClassMixedLengthSampler,
    LengthBucketSampler,
    SpamDataset,
    collate_spam,
    spam_loaders,
    spam_splits,
)
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
    mixed = list(ClassMixedLengthSampler(dataset.lengths(), dataset.labels, 8, shuffle=False))
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
    rows.append(("fp32, length-grouped with both classes (defaults) vs padding per batch",
                 per_message_logits(model, dataset, mixed), reference, labels))
    with merged_lora(model) as handle:
        merged = per_message_logits(model, dataset, in_order)
    rows.append((f"fp32, merged LoRA ({handle.count} layers) vs LoRA layers", merged, reference,
                 labels))
    with fused_lora(model) as fused:
        rows.append((f"fp32, fused LoRA ({fused.count} layers) vs LoRA layers",
                     per_message_logits(model, dataset, in_order), reference, labels))
    bf16 = resolve_precision("bf16", "cpu")
    with frozen_weights_in(model, torch.bfloat16), autocast_forward(model, bf16, "cpu"):
        rows.append(("bf16 autocast + bf16 frozen weights, defaults' batches vs fp32",
                     per_message_logits(model, dataset, mixed), reference, labels))
        rows.append(("bf16 autocast + bf16 frozen weights, bucketed vs fp32",
                     per_message_logits(model, dataset, bucketed), reference, labels))
    with fused_lora(model, torch.bfloat16), autocast_forward(model, bf16, "cpu"):
        start = time.perf_counter()
        low = per_message_logits(model, dataset, bucketed)
        seconds_low = time.perf_counter() - start
    rows.append(("bf16 autocast, fused LoRA in bf16, bucketed (fastest) vs fp32", low,
                 reference, labels))

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
          f"messages {seconds_original:.1f} s; bucketed bf16 fused, {len(dataset)} messages "
          f"{seconds_low:.1f} s")


SETTINGS = {  # name: (precision, bucket, fuse_lora); "fp32" is the reference
    "fp32": ("fp32", False, False),
    "bf16": ("bf16", False, False),
    "defaults (bf16, mixed length-grouped)": ("bf16", "mixed", False),
    "fp32 bucketed": ("fp32", True, False),
    "fp32 bucketed fused": ("fp32", True, True),
    "fastest (bf16 bucketed fused)": ("bf16", True, True),
}


def train_once(sms: Path, seed: int, precision: str, bucket: bool | str, fuse: bool) -> dict:
    loaders = spam_loaders(8, 123, path=sms, bucket=bucket)
    model = lora_classifier(SMALL_CFG, seed=seed, trained_look=False)
    optimizer = make_optimizer(model, lr=5e-4, weight_decay=0.1)
    history = train_classifier(model, loaders.train, loaders.validation, optimizer, 3,
                               step_fn=train_step, logits_fn=last_token_logits, seed=seed,
                               device="cpu", progress=False, precision=precision,
                               fuse_lora=fuse)
    val_correct = round(history.val_acc[-1] * len(loaders.validation.dataset))
    test_loss, test_acc = evaluate(loaders.test, model, last_token_logits)
    return {"history": history, "val_correct": val_correct, "test_acc": test_acc,
            "test_loss": test_loss}


def training_parity(sms: Path, seeds: int) -> None:
    print(f"\nSmall GPT ({SMALL_CFG['n_layers']} layers, {SMALL_CFG['emb_dim']} wide, random "
          f"weights), LoRA r=8, AdamW 5e-4, 3 epochs of the 1,045 training messages, "
          f"seeds 1-{seeds}; validation accuracy (149 messages) measured in each run's "
          "precision after the last epoch, test accuracy in fp32 on the 300 test messages\n")
    runs = {key: [train_once(sms, seed, *SETTINGS[key]) for seed in range(1, seeds + 1)]
            for key in SETTINGS}
    reference = runs["fp32"]
    print("| run | validation messages right per seed (vs fp32) | test accuracy per seed | "
          "mean (sd) | final train loss, mean | largest per-batch loss diff vs fp32 |")
    print("| --- | --- | --- | ---: | ---: | ---: |")
    for key, results in runs.items():
        accs = [r["test_acc"] for r in results]
        losses = [r["history"].train_loss[-1] for r in results]
        sd = statistics.stdev(accs) if len(accs) > 1 else 0.0
        val = ", ".join(f"{r['val_correct']} ({r['val_correct'] - f['val_correct']:+d})"
                        for r, f in zip(results, reference))
        same_batches = SETTINGS[key][1] is False
        steps = (max(max(abs(a - b) for a, b in zip(r["history"].batch_loss,
                                                     f["history"].batch_loss))
                     for r, f in zip(results, reference)) if same_batches else None)
        print(f"| {key} | {val} | {', '.join(f'{a:.3f}' for a in accs)} | "
              f"{statistics.mean(accs):.3f} ({sd:.3f}) | {statistics.mean(losses):.4f} | "
              f"{'other batches' if steps is None else f'{steps:.4f}'} |")
    single = {bucket: sum(int(b.labels.min() == b.labels.max())
                          for b in spam_loaders(8, 123, path=sms, bucket=bucket).train)
              for bucket in (False, "mixed", True)}
    print(f"\nsingle-class batches in an epoch: {single[True]} of 131 bucketed, "
          f"{single['mixed']} of 131 with the defaults' length-grouped mixed batches, "
          f"{single[False]} of 131 with random batches (spam messages are longer than ham: "
          "sorting by length alone sorts by label too)")


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
