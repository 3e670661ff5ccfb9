"""LoRA fine-tuning speed: the original lab's pipeline against the pack's, side by side.

One run, one machine, one table: seconds per epoch, real tokens per second, peak memory and
the speed-up over the original lab for

- the original lab: every message padded to 256 tokens, float32;
- padding to the longest message of the training split, float32;
- transformers + PEFT (when both are installed): Hugging Face's GPT2ForSequenceClassification
  with PEFT LoRA rank 8 on c_attn, attn.c_proj, mlp.c_fc and mlp.c_proj, padding per batch,
  float32;
- transformers + PEFT at its best: the same model with the two lines a skilled user adds,
  bf16 autocast around the forward pass (where the CPU has bf16 instructions) and
  length-grouped batches from the Trainer's own `LengthGroupedSampler` (`group_by_length`);
- the pack before issue 7: padding per batch, float32;
- the pack's defaults: `spam_loaders()` and `train_classifier()` as they are (length-grouped
  batches with both classes in each, bf16 autocast where the CPU has bf16, the student's
  LinearWithLoRA layers as written);
- the pack's fastest settings: `spam_loaders(bucket=True)` and
  `train_classifier(fuse_lora=True)` (helpers.fused_lora);
- the same without the fused layers (the student's layers, bucketed batches);
- the fastest settings in float32, what a CPU without bf16 instructions gets;
- only when named in `--only`: the bucketed batches with the student's layers under
  `torch.compile(dynamic=True)`, compile time counted in the epoch (to see whether it pays
  for itself within one epoch).

Before the pipelines it measures the machine's matrix-product peak in bf16 and in float32
(GPT-2 small's layer shapes, the same threads), and prints each pipeline's share of it: real
tokens per second x FLOP per real token (forward pass plus the input gradients through the
frozen weights, 2 x 85M multiply-adds = 0.34 GFLOP) over the peak of the dtype it computes in.
It also times those frozen products alone for the bucketed epoch's batches (distinct weights,
nothing else): the highest share any bf16 pipeline can reach at batch 8 on this machine.

Setup (as the design notes' reference figures): GPT-2 small shapes with random weights, LoRA
rank 8, alpha 16 on every Linear but the head, a 2-class head, AdamW (lr 5e-4, weight decay
0.1), batch 8, the real 1,045-message training split (131 batches per epoch).

A full epoch of the original pipeline takes 12 minutes here, so each pipeline times the same
fixed sample of its epoch's batches, after two warm-up steps, and extrapolates the mean to
the epoch's 131 batches. The sample is stratified: the epoch's batches sorted by their longest
message, then `--batches` of them evenly spaced in that order. Pipelines that batch the same
way (every one but the bucketed one) therefore time exactly the same messages; the bucketed
one times batches of its own epoch, chosen by the same rule. Each pipeline runs in its own
process (fresh allocator, clean memory high-water mark), one after the other.

Memory: the peak resident set size (RSS) of that process while training, read from Linux'
VmHWM after resetting it just before the first timed step (`/proc/self/clear_refs`), and how
much it rose above the RSS of the loaded model. Elsewhere the process' `ru_maxrss` (peak since
start) is reported instead.

    python -m benchmarks.lora_speed --threads 2           # from the repository root
    python -m benchmarks.lora_speed --threads 2 --grading # + seconds to grade one submission
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_SMS = REPO.parent / "shared" / "data" / "SMSSpamCollection"
FIXED_LENGTH = 256
SEED = 123
BATCH_SIZE = 8

FULL_EPOCH_PIPELINES = ("peft_best", "defaults", "fastest", "fastest_unfused")
# (out, in) of the 72 frozen Linear weights of GPT-2 small, in forward order
FROZEN_SHAPES = ([(768, 768)] * 4 + [(4 * 768, 768), (768, 4 * 768)]) * 12
# 2 FLOP per multiply-add x (forward + input gradients) x their 85M weights (12 x 12 x 768^2)
FLOP_PER_REAL_TOKEN = 2 * 2 * sum(out * inp for out, inp in FROZEN_SHAPES)
BASELINE = "peft_best"  # the speed-up column is against this row (and against the original)
PIPELINES = {
    "original": "original lab: pad to 256, fp32",
    "longest": "pad to the longest message ({longest}), fp32",
    "peft": "transformers + PEFT, padding per batch, fp32",
    "peft_best": "transformers + PEFT at its best: {peft_precision} autocast, group_by_length",
    "pack_fp32": "pack before issue 7: padding per batch, fp32",
    "defaults": "pack defaults: spam_loaders() + train_classifier()",
    "fastest": "pack fastest: spam_loaders(bucket=True) + train_classifier(fuse_lora=True)",
    "fastest_unfused": "pack bucketed, your layers: bucket=True, fuse_lora=False",
    "fastest_fp32": "pack fastest without bf16: bucket=True, fuse_lora=True, precision='fp32'",
    "compiled": "pack bucketed + torch.compile (compile time included)",
}
OPT_IN = ("compiled",)  # run only when named in --only (its compile takes minutes)


def short_label(name: str) -> str:
    """A pipeline's label before its colon: 'transformers + PEFT at its best'."""
    return PIPELINES[name].split(":")[0]


# --- measuring -------------------------------------------------------------------------------

def _status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def reset_peak_rss() -> bool:
    """Reset this process' RSS high-water mark (Linux 4.0+); False where impossible."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as clear:
            clear.write("5")
        return True
    except OSError:
        return False


def peak_rss_mib(reset_worked: bool) -> tuple[float, str]:
    hwm = _status_kib("VmHWM")
    if reset_worked and hwm is not None:
        return hwm / 1024, "VmHWM"
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    scale = 1024 * 1024 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB on Linux
    return maxrss / scale, "ru_maxrss"


def current_rss_mib() -> float | None:
    rss = _status_kib("VmRSS")
    return None if rss is None else rss / 1024


def stratified_sample(batches, n: int) -> list[int]:
    """Indices of `n` batches evenly spaced in the order of their longest real message."""
    order = sorted(range(len(batches)), key=lambda i: (int(batches[i].last_idx.max()), i))
    if n >= len(order):
        return sorted(order)
    picks = {order[round(k * (len(order) - 1) / max(n - 1, 1))] for k in range(n)}
    return sorted(picks)


# --- one pipeline, in its own process --------------------------------------------------------

class OneEpoch:
    """The given batches on the first pass, nothing after: train_classifier's end-of-epoch
    evaluation (not timed) then finds an empty loader instead of costing minutes."""

    def __init__(self, batches):
        self.batches, self.used = batches, False

    def __len__(self):
        return len(self.batches)

    def __iter__(self):
        batches, self.used = ([] if self.used else self.batches), True
        return iter(batches)


def _own_model():
    from autograder.solutions import lora_gpt_classifier
    from helpers.gpt import gpt_config

    return lora_gpt_classifier(gpt_config("124M"), seed=SEED)


def _peft_model():
    import warnings

    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import GPT2Config, GPT2ForSequenceClassification
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # the "pass an attention_mask" advice: not needed here
    warnings.filterwarnings("ignore", category=FutureWarning)

    torch.manual_seed(SEED)
    config = GPT2Config(vocab_size=50257, n_positions=1024, n_embd=768, n_layer=12, n_head=12,
                        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, num_labels=2,
                        pad_token_id=50256)
    model = GPT2ForSequenceClassification(config)
    lora = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, task_type="SEQ_CLS",
                      target_modules=["c_attn", "c_proj", "c_fc"], fan_in_fan_out=True)
    return get_peft_model(model, lora)


def peft_precision() -> str:
    """What a skilled PEFT user autocasts to on this CPU: bf16 with bf16 instructions."""
    from helpers.devices import cpu_bf16_instructions

    return "bf16" if cpu_bf16_instructions() else "fp32"


def group_by_length_loader(dataset, seed: int):
    """Batches as the Hugging Face Trainer makes them with `group_by_length=True`."""
    import torch
    from torch.utils.data import DataLoader
    from transformers.trainer_pt_utils import LengthGroupedSampler

    from helpers.spam_data import collate_spam

    sampler = LengthGroupedSampler(BATCH_SIZE, lengths=dataset.lengths(),
                                   generator=torch.Generator().manual_seed(seed))
    return DataLoader(dataset, batch_size=BATCH_SIZE, sampler=sampler, collate_fn=collate_spam)


def matmul_peak_gflops(dtype_name: str, threads: int | None, seconds: float = 1.5) -> float:
    """Best GFLOP/s of the matrix products of a GPT-2 small layer (256 tokens) in `dtype`."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    dtype = {"bf16": torch.bfloat16, "fp32": torch.float32}[dtype_name]
    tokens, width = 256, 768
    shapes = [(tokens, width, 3 * width), (tokens, width, 4 * width), (tokens, 4 * width, width)]
    best = 0.0
    for m, k, n in shapes:
        a, b = torch.randn(m, k, dtype=dtype), torch.randn(k, n, dtype=dtype)
        a @ b  # warm-up: allocations, packing code
        deadline = time.perf_counter() + seconds / len(shapes)
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            for _ in range(5):
                a @ b
            best = max(best, 5 * 2 * m * k * n / (time.perf_counter() - start) / 1e9)
    return best


def real_tokens(batches) -> int:
    """Real (non-padding) tokens of `batches`."""
    return sum(int((b.last_idx + 1).sum()) for b in batches)


def frozen_products_seconds(token_counts: list[int], threads: int | None) -> float:
    """Seconds of the frozen bf16 products alone of an epoch of batches of `token_counts` tokens.

    For each batch: every frozen weight's forward product and input-gradient product (the
    FLOP counted by FLOP_PER_REAL_TOKEN), with distinct weights as in the model (each one read
    from memory at every product, as in training), nothing else: no LoRA branch, attention,
    norm, cast, autograd or optimizer. The time no pipeline computing those products in bf16
    can beat at this batch size.
    """
    import torch

    if threads:
        torch.set_num_threads(threads)
    generator = torch.Generator().manual_seed(0)
    weights = [torch.randn(out, inp, generator=generator).to(torch.bfloat16)
               for out, inp in FROZEN_SHAPES]
    widths = {width for shape in FROZEN_SHAPES for width in shape}

    def products(tokens: int) -> float:
        rows = {w: torch.randn(tokens, w, generator=generator).to(torch.bfloat16)
                for w in widths}
        start = time.perf_counter()
        for weight in weights:
            rows[weight.shape[1]] @ weight.T
        for weight in reversed(weights):
            rows[weight.shape[0]] @ weight
        return time.perf_counter() - start

    products(max(token_counts))  # warm-up: allocations, oneDNN's kernels
    return sum(products(tokens) for tokens in token_counts)


def run_pipeline(name: str, sms: Path, n_batches: int, threads: int | None,
                 full_epoch: bool = False) -> dict:
    import torch
    import torch.nn.functional as F

    from autograder.solutions import last_token_logits, make_optimizer, train_step
    from helpers.params import count_parameters
    from helpers.precision import DTYPE_NAMES
    from helpers.spam_data import describe_batching, spam_loaders
    from helpers.training import train_classifier

    if threads:
        torch.set_num_threads(threads)
    longest = spam_loaders(BATCH_SIZE, SEED, path=sms).train.dataset.max_length
    loader_options = {
        "original": dict(pad_to=FIXED_LENGTH, bucket=False),
        "longest": dict(pad_to=longest, bucket=False),
        "peft": dict(bucket=False),
        "peft_best": dict(bucket=False),  # its dataset; the batches are group_by_length's
        "pack_fp32": dict(bucket=False),
        "defaults": dict(),
        "fastest": dict(bucket=True),
        "fastest_unfused": dict(bucket=True),
        "fastest_fp32": dict(bucket=True),
        "compiled": dict(bucket=True),
    }[name]
    loader = spam_loaders(BATCH_SIZE, SEED, path=sms, **loader_options).train
    if name == "peft_best":
        loader = group_by_length_loader(loader.dataset, SEED)
    torch.manual_seed(SEED)
    batches = list(loader)  # the first epoch, in order
    sample = stratified_sample(batches, n_batches)
    warmup = [batches[sample[-1]], batches[sample[0]]]  # the widest first: allocations
    timed_batches = [batches[i] for i in sample]
    batching = ("batches of 8, Trainer's LengthGroupedSampler (group_by_length), padded per "
                "batch" if name == "peft_best" else describe_batching(loader)["text"])
    result = {"name": name, "label": PIPELINES[name].format(longest=longest,
                                                            peft_precision=peft_precision()),
              "epoch_batches": len(batches), "sample": sample,
              "padded_tokens_per_batch": sum(b.input_ids.numel() for b in batches) / len(batches),
              "real_tokens_per_epoch": real_tokens(batches),
              "batching": batching, "settings": None}

    starts, ends = [], []

    def timed(step):
        """`step(batch)` with its start and end times recorded."""
        def wrapper(*args):
            starts.append(time.perf_counter())
            loss = step(*args)
            ends.append(time.perf_counter())
            return loss
        return wrapper

    if name == "compiled":
        from helpers.precision import frozen_weights_in, resolve_precision

        model = _own_model()
        trainable, total = count_parameters(model)
        optimizer = make_optimizer(model, lr=5e-4, weight_decay=0.1)
        precision = resolve_precision("auto", "cpu")
        compiled = torch.compile(model, dynamic=True)  # one graph for every batch shape

        def train_on(batch):
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast("cpu", dtype=precision.dtype, enabled=precision.autocast):
                logits = compiled(batch.input_ids)
            loss = F.cross_entropy(last_token_logits(logits.float(), batch.last_idx),
                                   batch.labels)
            loss.backward()
            optimizer.step()
            return loss.item()

        model.train()
        baseline, reset = current_rss_mib(), reset_peak_rss()
        with frozen_weights_in(model, precision.dtype):
            called = time.perf_counter()
            train_on(warmup[0])  # compiles the forward and the backward graphs
            result["setup_seconds"] = time.perf_counter() - called
            step = timed(train_on)
            for batch in warmup + timed_batches:
                step(batch)
        result["settings"] = {"precision": precision.name,
                              "precision_reason": precision.reason,
                              "frozen_weights": DTYPE_NAMES.get(precision.dtype, "fp32"),
                              "lora": f"your LinearWithLoRA layers, torch.compile(dynamic=True): "
                                      f"{result['setup_seconds']:.0f} s to compile"}
        peak_during_sample = peak_rss_mib(reset)
    elif name in ("peft", "peft_best"):
        model = _peft_model()
        trainable, total = count_parameters(model)
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad],
                                      lr=5e-4, weight_decay=0.1)
        precision = peft_precision() if name == "peft_best" else "fp32"

        def train_on(batch):
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
                logits = model(input_ids=batch.input_ids).logits
            loss = F.cross_entropy(logits.float(), batch.labels)
            loss.backward()
            optimizer.step()
            return loss.item()

        model.train()
        baseline, reset = current_rss_mib(), reset_peak_rss()
        step = timed(train_on)
        for batch in warmup + timed_batches:
            step(batch)
        reason = ("torch.autocast around the forward pass" if precision == "bf16"
                  else "transformers default")
        result["settings"] = {"precision": precision, "precision_reason": reason,
                              "frozen_weights": "fp32"}
        peak_during_sample = peak_rss_mib(reset)
        if full_epoch:  # check the extrapolation: the whole epoch, as its user runs it
            called = time.perf_counter()
            for batch in batches:
                train_on(batch)
            result["full_epoch_seconds"] = time.perf_counter() - called
    else:
        model = _own_model()
        trainable, total = count_parameters(model)
        optimizer = make_optimizer(model, lr=5e-4, weight_decay=0.1)
        fp32 = ("original", "longest", "pack_fp32", "fastest_fp32")
        precision = "fp32" if name in fp32 else "auto"
        fuse = name in ("fastest", "fastest_fp32")
        # The pack's real loop (its settings, autocast and frozen-weight handling) on the
        # warm-up then the timed batches; its end-of-epoch evaluation is not timed.
        baseline, reset = current_rss_mib(), reset_peak_rss()
        called = time.perf_counter()
        history = train_classifier(model, OneEpoch(warmup + timed_batches), [], optimizer, 1,
                                   step_fn=timed(train_step), logits_fn=last_token_logits,
                                   device="cpu", progress=False, precision=precision,
                                   fuse_lora=fuse)
        result["setup_seconds"] = starts[0] - called  # once per train_classifier call
        result["settings"] = history.settings
        peak_during_sample = peak_rss_mib(reset)
        if full_epoch:  # check the extrapolation: the whole epoch, as a student runs it
            history = train_classifier(model, OneEpoch(batches), [], optimizer, 1,
                                       step_fn=train_step, logits_fn=last_token_logits,
                                       device="cpu", progress=False, precision=precision,
                                       fuse_lora=fuse)
            result["full_epoch_seconds"] = history.epoch_seconds[0]

    peak, source = peak_during_sample
    n_timed = len(timed_batches)
    per_batch = (ends[-1] - starts[len(warmup)]) / n_timed  # steps and the loop around them
    result.update(
        trainable=trainable, total=total,
        step_seconds=[end - start for start, end in zip(starts, ends)][len(warmup):],
        seconds_per_batch=per_batch,
        seconds_per_epoch=per_batch * len(batches) + result.get("setup_seconds", 0.0),
        peak_rss_mib=peak, rss_source=source, baseline_rss_mib=baseline,
    )
    return result


# --- the whole benchmark ---------------------------------------------------------------------

def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_busy_seconds() -> float | None:
    """CPU seconds spent busy by the whole machine since boot (all cores), from /proc/stat."""
    try:
        with open("/proc/stat", encoding="ascii") as stat:
            fields = [int(x) for x in stat.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields) - idle) / os.sysconf("SC_CLK_TCK")


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def busy_cores(seconds: float = 5.0) -> float | None:
    """Cores kept busy by the machine over `seconds` while this process sleeps."""
    before = cpu_busy_seconds()
    if before is None:
        return None
    time.sleep(seconds)
    return (cpu_busy_seconds() - before) / seconds


def load_average() -> float | None:
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


def peft_available() -> bool:
    try:
        import peft  # noqa: F401
        import transformers  # noqa: F401
    except ImportError:
        return False
    return True


def time_grading(timeout: int) -> tuple[float | None, str]:
    """Seconds to grade the 'complete' example submission with `python -m autograder grade`."""
    try:
        from autograder.demo.examples import write_examples
    except ImportError as exc:
        return None, f"autograder examples unavailable ({exc})"
    with tempfile.TemporaryDirectory(prefix="lora-bench-grade-") as tmp:
        submissions = Path(tmp) / "submissions"
        write_examples(submissions, ["complete"])
        start, busy, ours = time.perf_counter(), cpu_busy_seconds(), children_cpu_seconds()
        try:
            done = subprocess.run(
                [sys.executable, "-m", "autograder", "grade", str(submissions),
                 "--out", str(Path(tmp) / "out"), "--jobs", "1"],
                cwd=REPO, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return None, f"did not finish in {timeout} s"
        seconds = time.perf_counter() - start
        if done.returncode != 0:
            return seconds, f"exit status {done.returncode}: {done.stderr.strip()[-300:]}"
        note = "1 submission (the complete solution), 6 notebooks, --jobs 1"
        if busy is not None:
            others = (cpu_busy_seconds() - busy - (children_cpu_seconds() - ours)) / seconds
            note += f"; other processes used {max(others, 0.0):.2f} cores meanwhile"
        return seconds, note


DISTURBED = 0.25  # cores used by other processes above which a timing is not trusted


def wait_until_idle(limit: float = 600.0) -> bool:
    """Wait (at most `limit` seconds) until other processes keep under 0.15 cores busy."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        busy = busy_cores(10.0)
        if busy is None or busy < 0.15:
            return True
    return False


def products_bound(sms: Path, threads: int | None, bf16_peak: float) -> dict:
    """The frozen products alone of the bucketed epoch: seconds, share of the peak, a line."""
    import torch

    from helpers.spam_data import spam_loaders

    torch.manual_seed(SEED)
    batches = list(spam_loaders(BATCH_SIZE, SEED, path=sms, bucket=True).train)
    seconds = frozen_products_seconds([b.input_ids.numel() for b in batches], threads)
    share = real_tokens(batches) * FLOP_PER_REAL_TOKEN / 1e9 / seconds / bf16_peak
    line = (f"bound at batch 8: the frozen bf16 products alone of the bucketed epoch ("
            f"{len(batches)} batches, forward and input gradients, distinct weights, nothing "
            f"else) take {seconds:.1f} s, {share:.0%} of the bf16 peak: no bf16 pipeline's "
            "share can be higher")
    return {"seconds": seconds, "share": share, "line": line}


def run_worker(name: str, tmp: Path, args: argparse.Namespace) -> dict:
    """Run one pipeline in a fresh process; its measurements plus how disturbed it was."""
    out = tmp / f"{name}.json"
    command = [sys.executable, "-m", "benchmarks.lora_speed", "--worker", name,
               "--worker-out", str(out), "--sms", str(args.sms), "--batches", str(args.batches)]
    if args.threads:
        command += ["--threads", str(args.threads)]
    if args.full_epochs:
        command.append("--full-epochs")
    # torch.compile's on-disk cache starts empty, as on a student's first run
    cache = tempfile.mkdtemp(prefix="inductor-", dir=tmp)
    env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": cache}
    start, busy, ours = time.perf_counter(), cpu_busy_seconds(), children_cpu_seconds()
    subprocess.run(command, cwd=REPO, check=True, env=env)
    wall = time.perf_counter() - start
    result = json.loads(out.read_text())
    result["wall_seconds"] = wall
    if busy is not None:  # cores kept busy by other processes meanwhile (ours excluded)
        others = cpu_busy_seconds() - busy - (children_cpu_seconds() - ours)
        result["others_cores"] = max(others, 0.0) / wall
    return result


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sms", type=Path, default=DEFAULT_SMS,
                        help="the SMSSpamCollection file (default: %(default)s)")
    parser.add_argument("--batches", type=int, default=16,
                        help="batches timed per pipeline (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--only", nargs="+", choices=list(PIPELINES),
                        help="run only these pipelines (the original one is always run; "
                             f"{', '.join(OPT_IN)} only when named here)")
    parser.add_argument("--grading", action="store_true",
                        help="also time the autograder on the complete example submission")
    parser.add_argument("--full-epochs", dest="full_epochs", action="store_true",
                        help="also time whole epochs of transformers + PEFT at its best, "
                             "the pack's defaults, fastest and bucketed settings (about 9 more "
                             "minutes on 2 cores), to check the extrapolation")
    parser.add_argument("--retries", type=int, default=2,
                        help="times a pipeline disturbed by other processes is run again, "
                             "after waiting for an idle machine (default: %(default)s)")
    parser.add_argument("--json", type=Path, help="also write every measurement there")
    parser.add_argument("--worker", choices=list(PIPELINES), help=argparse.SUPPRESS)
    parser.add_argument("--worker-out", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.worker:
        result = run_pipeline(args.worker, args.sms, args.batches, args.threads,
                              args.full_epochs and args.worker in FULL_EPOCH_PIPELINES)
        args.worker_out.write_text(json.dumps(result))
        return 0

    import torch

    from helpers.devices import cpu_bf16_instructions

    names = [name for name in PIPELINES
             if name == "original" or (name in args.only if args.only else name not in OPT_IN)]
    skipped = []
    if not peft_available():
        for name in ("peft", "peft_best"):
            if name in names:
                names.remove(name)
                skipped.append(f"{short_label(name)}: not installed "
                               "(pip install -r requirements-test.txt)")
    started = dt.datetime.now(dt.timezone.utc)
    threads = args.threads or torch.get_num_threads()
    loads = [load_average()]
    idle_check = busy_cores()
    print(f"{started:%Y-%m-%d %H:%M} UTC | {cpu_model()} ({os.cpu_count()} CPUs, "
          f"bf16 instructions: {cpu_bf16_instructions() or 'none'}) | Python "
          f"{platform.python_version()}, torch {torch.__version__}, {threads} threads | "
          f"load average {loads[0]:.2f}, busy cores before start "
          f"{'?' if idle_check is None else f'{idle_check:.2f}'}")
    peaks = {dtype: matmul_peak_gflops(dtype, threads) for dtype in ("bf16", "fp32")}
    print(f"matrix-product peak (GPT-2 small layer shapes, 256 tokens, {threads} threads): "
          f"bf16 {peaks['bf16']:,.0f} GFLOP/s, fp32 {peaks['fp32']:,.0f} GFLOP/s", flush=True)
    bound = products_bound(args.sms, threads, peaks["bf16"])
    print(bound["line"], flush=True)
    results = {}
    with tempfile.TemporaryDirectory(prefix="lora-bench-") as tmp:
        for name in names:
            for attempt in range(args.retries + 1):
                r = run_worker(name, Path(tmp), args)
                disturbed = r.get("others_cores")
                print(f"  {r['label']}: {r['seconds_per_batch']:.3f} s/batch on "
                      f"{len(r['step_seconds'])} batches ({r['wall_seconds']:.0f} s wall; other "
                      f"processes used {'?' if disturbed is None else f'{disturbed:.2f}'} cores)",
                      flush=True)
                if disturbed is None or disturbed <= DISTURBED or attempt == args.retries:
                    break
                print("    disturbed: waiting for an idle machine, then running it again",
                      flush=True)
                wait_until_idle()
            results[name] = r
            loads.append(load_average())

    grading = time_grading(timeout=900) if args.grading else None
    original = results["original"]["seconds_per_epoch"]
    best = results.get(BASELINE, {}).get("seconds_per_epoch")
    n = results["original"]["epoch_batches"]
    print(f"\n| pipeline | padded tokens per batch | s/epoch ({n} batches, est.) | real tokens/s "
          "| share of the peak | peak RSS while training (MiB) | RSS rise over the loaded "
          "model (MiB) | speed-up vs original" + (" | vs PEFT at its best |" if best else " |"))
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---:"
          + (" | ---: |" if best else " |"))
    for name, r in results.items():
        tokens_per_s = r["real_tokens_per_epoch"] / r["seconds_per_epoch"]
        dtype = "fp32" if r["settings"]["precision"] == "fp32" else "bf16"
        share = tokens_per_s * FLOP_PER_REAL_TOKEN / 1e9 / peaks[dtype]
        above = ("n/a" if r["baseline_rss_mib"] is None or r["rss_source"] != "VmHWM"
                 else f"{r['peak_rss_mib'] - r['baseline_rss_mib']:,.0f}")
        versus_best = f" | {best / r['seconds_per_epoch']:.2f}x |" if best else " |"
        print(f"| {r['label']} | {r['padded_tokens_per_batch']:,.0f} | "
              f"{r['seconds_per_epoch']:,.1f} | {tokens_per_s:,.0f} | {share:.0%} of {dtype} | "
              f"{r['peak_rss_mib']:,.0f} | {above} | "
              f"{original / r['seconds_per_epoch']:.1f}x{versus_best}")
    real = results["original"]["real_tokens_per_epoch"]
    floor = real * FLOP_PER_REAL_TOKEN / 1e9 / peaks["bf16"]
    print(f"\nfloor: {real:,} real tokens per epoch x {FLOP_PER_REAL_TOKEN / 1e9:.2f} GFLOP = "
          f"{real * FLOP_PER_REAL_TOKEN / 1e12:.1f} TFLOP, {floor:.1f} s at the bf16 peak")
    print(bound["line"])
    print()
    for name, r in results.items():
        s = r["settings"]
        frozen = ("" if s["frozen_weights"] == "fp32"
                  else f", frozen Linear weights kept in {s['frozen_weights']}")
        lora = f"; LoRA: {s['lora']}" if "lora" in s else ""
        print(f"- {r['label']}: {r['batching']}; precision {s['precision']} "
              f"({s['precision_reason']}){frozen}{lora}")
    best_full = results.get(BASELINE, {}).get("full_epoch_seconds")
    for name, r in results.items():
        if "full_epoch_seconds" in r:
            full = r["full_epoch_seconds"]
            against_best = (f", {best_full / full:.2f}x {short_label(BASELINE)}'s "
                            "whole epoch" if best_full and name != BASELINE else "")
            print(f"- {r['label']}: a whole epoch ({r['epoch_batches']} batches) measured: "
                  f"{full:.1f} s (estimate {r['seconds_per_epoch']:.1f} s), "
                  f"{original / full:.1f}x the original's estimate{against_best}")
    for name, r in results.items():
        if name in ("peft", "peft_best"):
            print(f"- {r['label']}: trainable {r['trainable']:,} of {r['total']:,} "
                  "(c_attn is one fused qkv Linear 768->2304: rank 8 there is 24,576 "
                  "parameters, against 36,864 for three separate q, k, v layers; score head "
                  "768x2 without bias); no attention mask (right padding + causal attention, "
                  "as in the pack)")
        elif name == "original":
            print(f"- own GPT-2 + LoRA: trainable {r['trainable']:,} of {r['total']:,}")
    for line in skipped:
        print(f"- skipped: {line}")
    if grading is not None:
        seconds, note = grading
        shown = "n/a" if seconds is None else f"{seconds:.0f} s"
        print(f"- autograder: {shown} per submission ({note})")
    finished = dt.datetime.now(dt.timezone.utc)
    others = [r["others_cores"] for r in results.values() if "others_cores" in r]
    worst = max(others + ([idle_check] if idle_check is not None else []), default=None)
    print(f"- sample: {args.batches} batches per pipeline after 2 warm-up steps; other "
          f"processes kept at most {'?' if worst is None else f'{worst:.2f}'} cores busy "
          f"(just before the run and during each pipeline); wall time "
          f"{(finished - started).total_seconds() / 60:.1f} min")
    if worst is None:
        print("- could not check that the machine was idle (/proc/stat unreadable).")
    elif worst > DISTURBED:
        print("- WARNING: other processes were running; timings are not reliable (re-run "
              "when the machine is idle).")
    if args.json:
        args.json.write_text(json.dumps({"started": started.isoformat(), "peaks": peaks,
                                         "products_bound": bound,
                                         "results": results,
                                         "grading": grading, "loads": loads}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
