"""Save and restore only what fine-tuning changed (LoRA matrices and the new head).

A LoRA checkpoint of GPT-2 small is about 5 MB instead of 500 MB: the frozen pretrained
weights are loaded from the original checkpoint, then the trained tensors on top.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from helpers.paths import data_dir

CLASSIFIER_FILE_NAME = "lora_spam_classifier.pt"


def default_checkpoint_path() -> Path:
    """data/lora_spam_classifier.pt (notebook 05 writes it, notebook 06 reads it)."""
    return data_dir() / CLASSIFIER_FILE_NAME


def save_trainable(model: nn.Module, path: str | os.PathLike | None = None) -> Path:
    """Write the trainable tensors of `model` (by name) atomically; returns the path."""
    path = Path(path) if path is not None else default_checkpoint_path()
    tensors = {name: p.detach().cpu() for name, p in model.named_parameters() if p.requires_grad}
    if not tensors:
        raise ValueError("The model has no trainable parameter to save.")
    tmp = path.with_name(path.name + ".part")
    torch.save(tensors, tmp)
    os.replace(tmp, path)
    return path


def load_trainable(model: nn.Module, path: str | os.PathLike | None = None) -> nn.Module:
    """Copy saved trainable tensors into `model`, which must have the same structure."""
    path = Path(path) if path is not None else default_checkpoint_path()
    if not path.is_file():
        raise FileNotFoundError(
            f"No fine-tuned checkpoint at {path}: run notebook 05_training to the end first "
            "(it saves the trained LoRA and head weights there)."
        )
    tensors = torch.load(path, map_location="cpu", weights_only=True)
    params = dict(model.named_parameters())
    missing = [name for name in tensors if name not in params]
    if missing:
        raise ValueError(
            f"{path} holds {missing[0]} (and {len(missing) - 1} more) that this model lacks: "
            "build the model exactly as in notebook 05 (same LoRA rank, head) before loading."
        )
    with torch.no_grad():
        for name, tensor in tensors.items():
            if params[name].shape != tensor.shape:
                raise ValueError(f"{name}: saved shape {tuple(tensor.shape)}, model has "
                                 f"{tuple(params[name].shape)}; use the same LoRA rank as in 05.")
            params[name].copy_(tensor)
    return model
