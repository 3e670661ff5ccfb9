"""The environment variables notebooks run under, when graded or run like a student."""

from __future__ import annotations

import os
from pathlib import Path

from helpers.carry import CARRY_DIR_VAR
from helpers.modes import GRADING_VAR
from helpers.paths import DATA_DIR_VAR, IMG_DIR_VAR

OFFLINE_VARS = {"HF_HUB_OFFLINE": "1"}  # nothing a graded notebook runs may download


def student_environment(scratch: Path) -> dict[str, str]:
    """Grading mode (random weights, small data) with downloads and plots in `scratch`."""
    scratch = Path(scratch)
    return {GRADING_VAR: "1", DATA_DIR_VAR: str(scratch / "data"),
            IMG_DIR_VAR: str(scratch / "img"), **OFFLINE_VARS}


def grading_environment(carry_dir: Path, scratch: Path) -> dict[str, str]:
    """As `student_environment`, with earlier notebooks carried from `carry_dir` (the masters),
    so that each step is graded on correct code for the steps before it."""
    return {**student_environment(scratch), CARRY_DIR_VAR: str(carry_dir)}


def without_carry(env: dict[str, str] | None = None) -> dict[str, str]:
    """A copy of `env` (default: this process's) in which earlier notebooks are the student's."""
    return {k: v for k, v in (os.environ if env is None else env).items() if k != CARRY_DIR_VAR}
