"""Reproducibility: seeding, device choice, and the environment header the report asks for."""

from __future__ import annotations

import os
import platform
import random
from importlib.metadata import PackageNotFoundError, version

import numpy as np
import torch

from helpers.devices import describe_device

DEVICE_VAR = "LORA_LAB_DEVICE"
REPORTED_PACKAGES = ("torch", "tiktoken", "pandas", "matplotlib", "jupyterlab", "numpy")


def set_seed(seed: int = 123) -> int:
    """Seed Python's `random`, NumPy and torch (CPU and every GPU); returns the seed."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return seed


def pick_device(preferred: str | None = None) -> torch.device:
    """The device to compute on: `preferred`, else $LORA_LAB_DEVICE, else cuda > mps > cpu."""
    choice = preferred or os.environ.get(DEVICE_VAR)
    if choice:
        device = torch.device(choice)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(f"Device {choice!r} asked for, but torch sees no CUDA GPU.")
        if device.type == "mps" and not torch.backends.mps.is_available():
            raise RuntimeError(f"Device {choice!r} asked for, but Apple MPS is not available.")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def _package_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def environment_report(seed: int | None = None, device: torch.device | str | None = None) -> str:
    """The reproducibility header of the report, as markdown to paste into `rapport.md`."""
    device = pick_device(str(device) if device is not None else None)
    rows = [
        ("OS", platform.platform()),
        ("Python", platform.python_version()),
        *((name, _package_version(name)) for name in REPORTED_PACKAGES),
        ("Device", describe_device(device)),
        ("Seed", "not set" if seed is None else str(seed)),
    ]
    lines = ["| Élément | Valeur |", "| --- | --- |"]
    lines += [f"| {key} | {value} |" for key, value in rows]
    return "\n".join(lines)
