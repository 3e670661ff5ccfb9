"""Load OpenAI's pretrained GPT-2 weights into `helpers.gpt.GPTModel`.

The weights come from the safetensors checkpoint of the Hugging Face `gpt2` models (no
TensorFlow needed). Where they are taken from, first match wins:

1. the `weights` argument: a `model.safetensors` file or a folder holding one;
2. the environment variable `LORA_LAB_GPT2_WEIGHTS` (same meaning), for labs without internet;
3. a copy downloaded earlier into `data/gpt2/<size>/`;
4. a download from the Hugging Face hub (once, with a progress bar, written atomically).

Every checkpoint is checked against the model's shapes before any weight is copied.
"""

from __future__ import annotations

import copy
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from helpers.download import DownloadError, is_reachable
from helpers.gpt import HUB_MODEL_IDS, GPTModel, canonical_model_name, gpt_config
from helpers.modes import grading_mode
from helpers.paths import data_dir, local_file

WEIGHTS_VAR = "LORA_LAB_GPT2_WEIGHTS"
WEIGHTS_FILE_NAME = "model.safetensors"
_IGNORED_SUFFIXES = (".attn.bias", ".attn.masked_bias")  # causal-mask buffers, not weights
GRADING_SEED = 123  # the random weights of grading mode


# Tensors of block i besides q, k, v: (lab name, GPT-2 checkpoint name, stored as Conv1D (in, out))
_BLOCK_TENSORS = (
    ("att.out_proj.weight", "attn.c_proj.weight", True),
    ("att.out_proj.bias", "attn.c_proj.bias", False),
    ("ff.layers.0.weight", "mlp.c_fc.weight", True), ("ff.layers.0.bias", "mlp.c_fc.bias", False),
    ("ff.layers.2.weight", "mlp.c_proj.weight", True),
    ("ff.layers.2.bias", "mlp.c_proj.bias", False),
    ("norm1.scale", "ln_1.weight", False), ("norm1.shift", "ln_1.bias", False),
    ("norm2.scale", "ln_2.weight", False), ("norm2.shift", "ln_2.bias", False),
)


def _hub_endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


def _resolve_local(path: str | os.PathLike) -> Path:
    return local_file(path, WEIGHTS_FILE_NAME, "GPT-2 checkpoint",
                      f"Give the path of a `{WEIGHTS_FILE_NAME}` file (or of the folder that holds "
                      "it) downloaded from the Hugging Face `gpt2` model.")


def gpt2_checkpoint_path(model_name: str = "gpt2-small (124M)",
                         weights: str | os.PathLike | None = None) -> Path:
    """The local path of the safetensors checkpoint, downloading it on first use."""
    if weights is not None:
        return _resolve_local(weights)
    if os.environ.get(WEIGHTS_VAR):
        return _resolve_local(os.environ[WEIGHTS_VAR])

    name = canonical_model_name(model_name)
    repo_id = HUB_MODEL_IDS[name]
    local_dir = data_dir() / "gpt2" / repo_id.split("/")[-1]
    if (local_dir / WEIGHTS_FILE_NAME).is_file():
        return local_dir / WEIGHTS_FILE_NAME

    endpoint = _hub_endpoint()
    url = f"{endpoint}/{repo_id}/resolve/main/{WEIGHTS_FILE_NAME}"
    how_to_fix = (
        f"To continue without internet, download {url} on a machine that has it, copy it "
        f"here and either pass `weights=\"path/to/{WEIGHTS_FILE_NAME}\"` or set the environment "
        f"variable {WEIGHTS_VAR} to that path (a folder holding the file works too)."
    )
    if not is_reachable(endpoint):
        raise DownloadError(f"Cannot reach {endpoint} to download the {name} weights. {how_to_fix}")

    from huggingface_hub import hf_hub_download  # imported here: only needed to download

    try:
        path = hf_hub_download(repo_id=repo_id, filename=WEIGHTS_FILE_NAME,
                               local_dir=local_dir, endpoint=endpoint)
    except Exception as exc:  # hub errors come in many types; all mean "not downloaded"
        raise DownloadError(f"Downloading the {name} weights failed ({exc}). {how_to_fix}") from None
    return Path(path)


def _hf_to_lab_state_dict(hf: dict[str, torch.Tensor], n_layers: int) -> dict[str, torch.Tensor]:
    """Rename (and transpose) Hugging Face GPT-2 tensors into this pack's module names.

    GPT-2 stores its linear layers as Conv1D, weight shape (in, out): they are transposed to
    nn.Linear's (out, in). The fused `c_attn` projection is split into query, key and value.
    The output head is the token embedding (GPT-2 ties them) unless `lm_head.weight` exists.
    """
    hf = {k.removeprefix("transformer."): v for k, v in hf.items()
          if not k.endswith(_IGNORED_SUFFIXES)}
    sd = {
        "tok_emb.weight": hf["wte.weight"],
        "pos_emb.weight": hf["wpe.weight"],
        "final_norm.scale": hf["ln_f.weight"],
        "final_norm.shift": hf["ln_f.bias"],
        "out_head.weight": hf.get("lm_head.weight", hf["wte.weight"]),
    }
    for i in range(n_layers):
        src, dst = f"h.{i}.", f"trf_blocks.{i}."
        q_w, k_w, v_w = hf[src + "attn.c_attn.weight"].chunk(3, dim=1)
        q_b, k_b, v_b = hf[src + "attn.c_attn.bias"].chunk(3, dim=0)
        sd.update({
            dst + "att.W_query.weight": q_w.T, dst + "att.W_query.bias": q_b,
            dst + "att.W_key.weight": k_w.T, dst + "att.W_key.bias": k_b,
            dst + "att.W_value.weight": v_w.T, dst + "att.W_value.bias": v_b,
        })
        sd.update({dst + lab: hf[src + name].T if conv1d else hf[src + name]
                   for lab, name, conv1d in _BLOCK_TENSORS})
    return sd


def lab_to_hf_state_dict(sd: dict[str, torch.Tensor], n_layers: int) -> dict[str, torch.Tensor]:
    """The inverse of `_hf_to_lab_state_dict` for GPT-2's body (no `out_head`): nn.Linear
    weights transposed back to Conv1D's (in, out); query, key and value fused into `c_attn`."""
    hf = {
        "wte.weight": sd["tok_emb.weight"], "wpe.weight": sd["pos_emb.weight"],
        "ln_f.weight": sd["final_norm.scale"], "ln_f.bias": sd["final_norm.shift"],
    }
    for i in range(n_layers):
        src, dst = f"trf_blocks.{i}.", f"h.{i}."
        qkv = [src + f"att.{name}" for name in ("W_query", "W_key", "W_value")]
        hf.update({
            dst + "attn.c_attn.weight": torch.cat([sd[n + ".weight"].T for n in qkv], dim=1),
            dst + "attn.c_attn.bias": torch.cat([sd[n + ".bias"] for n in qkv], dim=0),
        })
        hf.update({dst + name: sd[src + lab].T if conv1d else sd[src + lab]
                   for lab, name, conv1d in _BLOCK_TENSORS})
    return {k: v.contiguous() for k, v in hf.items()}


def load_weights_into_gpt(model: GPTModel, hf_state_dict: dict[str, torch.Tensor]) -> GPTModel:
    """Copy a Hugging Face GPT-2 state dict into `model`, checking every name and shape."""
    if not model.cfg["qkv_bias"]:
        raise ValueError("GPT-2 checkpoints have query/key/value biases: build the model "
                         "with qkv_bias=True.")
    try:
        sd = _hf_to_lab_state_dict(hf_state_dict, model.cfg["n_layers"])
    except KeyError as exc:
        raise ValueError(
            f"The checkpoint has no tensor {exc}: it is not a GPT-2 checkpoint with "
            f"{model.cfg['n_layers']} layers."
        ) from None
    expected = model.state_dict()
    for key, tensor in sd.items():
        if tensor.shape != expected[key].shape:
            raise ValueError(
                f"Checkpoint tensor for {key} has shape {tuple(tensor.shape)}, the model "
                f"expects {tuple(expected[key].shape)}: checkpoint and model size differ."
            )
    model.load_state_dict({k: v.contiguous() for k, v in sd.items()}, strict=True)
    return model


def load_pretrained_gpt2(model_name: str = "gpt2-small (124M)",
                         weights: str | os.PathLike | None = None,
                         **config_overrides) -> GPTModel:
    """A `GPTModel` of the given size with OpenAI's pretrained weights, in eval mode."""
    model = GPTModel(gpt_config(model_name, **config_overrides))
    path = gpt2_checkpoint_path(model_name, weights)
    try:
        hf_state_dict = load_file(path)
    except (SafetensorError, OSError) as exc:
        raise ValueError(
            f"{path} is not a readable safetensors file ({exc}). Delete it and download it again."
        ) from None
    load_weights_into_gpt(model, hf_state_dict)
    return model.eval()


def load_lab_gpt2(model_name: str = "gpt2-small (124M)", grading_n_layers: int | None = None,
                  **config_overrides) -> GPTModel:
    """The lab's base model: pretrained GPT-2, or random weights in grading mode.

    Grading mode ($LORA_LAB_GRADING=1) downloads nothing and keeps the exact architecture, so
    parameter counts and shapes are those of the real model; `grading_n_layers` keeps only
    that many transformer blocks there (same widths), for notebooks that train rather than
    count.
    """
    if grading_mode():
        if grading_n_layers is not None:
            config_overrides["n_layers"] = grading_n_layers
        return random_gpt2(gpt_config(model_name, **config_overrides))
    return load_pretrained_gpt2(model_name, **config_overrides)


@dataclass
class _RandomBuilds:
    """The grading-mode builds of one config in this process."""

    rng_after_build: torch.Tensor  # the random generator's state a new build leaves
    prepared: list[GPTModel] = field(default_factory=list)  # handed out as they are
    original: GPTModel | None = None  # deep-copied once nothing prepared is left


_random_builds: dict[str, _RandomBuilds] = {}


def _new_random_gpt2(cfg: dict) -> tuple[GPTModel, torch.Tensor]:
    torch.manual_seed(GRADING_SEED)
    model = GPTModel(cfg).eval()
    return model, torch.get_rng_state()


def _builds_of(cfg: dict) -> _RandomBuilds:
    key = json.dumps(cfg, sort_keys=True)
    if key not in _random_builds:
        model, rng_after_build = _new_random_gpt2(cfg)
        _random_builds[key] = _RandomBuilds(rng_after_build, original=model)
    return _random_builds[key]


def prepare_random_gpt2(cfg: dict, calls: int) -> None:
    """Build now the models the next `calls` calls of `random_gpt2(cfg)` return as they are.

    Made for a process that forks: each forked process (a grading kernel, see
    `autograder.grade.kernel_warmup`) has them copy-on-write, so its first `calls` loads cost
    neither an initialisation nor a copy. No copy is kept behind: a call beyond `calls` builds
    anew.
    """
    builds = _builds_of(cfg)
    if builds.original is not None:
        builds.prepared.append(builds.original)
        builds.original = None
    while len(builds.prepared) < calls:
        builds.prepared.append(copy.deepcopy(builds.prepared[0]))


def random_gpt2(cfg: dict) -> GPTModel:
    """`torch.manual_seed(GRADING_SEED); GPTModel(cfg).eval()`, built once per `cfg` and process.

    Every call returns a model of its own, equal to a new build, and leaves the random
    generator where a new build leaves it, without the seconds of weight initialisation: a
    model made ready by `prepare_random_gpt2` as it is, else a deep copy of this process's
    first build.
    """
    builds = _builds_of(cfg)
    torch.manual_seed(GRADING_SEED)  # every device's generator, as a new build would leave it
    torch.set_rng_state(builds.rng_after_build)
    if builds.prepared:
        return builds.prepared.pop()
    if builds.original is None:  # everything prepared was handed out: build anew
        builds.original, _ = _new_random_gpt2(cfg)
    return copy.deepcopy(builds.original)
