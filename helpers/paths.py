"""Where the course pack reads and writes files: `data/` for downloads, `img/` for plots.

Both default to folders at the repository root and can be moved with an environment
variable (the autograder points them into each student's working copy). `local_file` finds a
file the user points at (the file itself or the folder that holds it).
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
LAB_NOTEBOOKS = (  # the lab's notebooks, in order
    "01_lora_layer",
    "02_lora_wrapper",
    "03_lora_injection",
    "04_classification_head",
    "05_training",
    "06_inference",
)
BONUS_NOTEBOOKS = ("07_peft",)  # optional: graded apart, never counted as missing
ALL_NOTEBOOKS = LAB_NOTEBOOKS + BONUS_NOTEBOOKS
DATA_DIR_VAR = "LORA_LAB_DATA_DIR"
IMG_DIR_VAR = "LORA_LAB_IMG_DIR"


def data_dir() -> Path:
    """Folder for downloaded data and weights (created if needed)."""
    path = Path(os.environ.get(DATA_DIR_VAR) or REPO_ROOT / "data")
    path.mkdir(parents=True, exist_ok=True)
    return path


def img_dir() -> Path:
    """Folder for the plots the report includes (created if needed)."""
    path = Path(os.environ.get(IMG_DIR_VAR) or REPO_ROOT / "img")
    path.mkdir(parents=True, exist_ok=True)
    return path


def local_file(path: str | os.PathLike, name: str, label: str, hint: str) -> Path:
    """`path`, or `path/name` when `path` is a folder; else FileNotFoundError.

    The error reads "No {label} at {path}. {hint}".
    """
    path = Path(path).expanduser()
    if path.is_dir():
        path = path / name
    if not path.is_file():
        raise FileNotFoundError(f"No {label} at {path}. {hint}")
    return path
