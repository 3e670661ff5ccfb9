"""Example submissions, made from the release and the masters, for the demo and the tests.

Each is a folder of the six notebooks as a student would hand them in: the complete solution,
the untouched release, and classic mistakes seen in real submissions of this lab.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable

import nbformat

from autograder.course import RELEASE_DIR
from autograder.notebook_source import MASTERS_DIR, NOTEBOOK_NAMES, parse_master

Notebooks = dict[str, nbformat.NotebookNode]


def _grade_id(cell) -> str | None:
    return cell.metadata.get("nbgrader", {}).get("grade_id")


def _cell(nb: nbformat.NotebookNode, grade_id: str):
    return next(c for c in nb.cells if _grade_id(c) == grade_id)


def complete_solution(release_dir: Path = RELEASE_DIR) -> Notebooks:
    """The release with every exercise cell filled in with the masters' code."""
    notebooks = {}
    for name in NOTEBOOK_NAMES:
        release = nbformat.read(release_dir / f"{name}.ipynb", as_version=4)
        master = parse_master((MASTERS_DIR / f"{name}.md").read_text(encoding="utf-8"), name)
        solutions = {_grade_id(c): c.source for c in master.cells
                     if c.metadata.get("nbgrader", {}).get("solution") and c.cell_type == "code"}
        for cell in release.cells:
            if _grade_id(cell) in solutions:
                cell.source = solutions[_grade_id(cell)]
        notebooks[name] = release
    return notebooks


def untouched_release(release_dir: Path = RELEASE_DIR) -> Notebooks:
    return {name: nbformat.read(release_dir / f"{name}.ipynb", as_version=4)
            for name in NOTEBOOK_NAMES}


def out_head_wrapped(release_dir: Path = RELEASE_DIR) -> Notebooks:
    """Step 3 forgets to skip `out_head`: trainable 1,735,304 instead of 1,327,104."""
    notebooks = complete_solution(release_dir)
    cell = _cell(notebooks["03_lora_injection"], "replace_linear_with_lora")
    cell.source = cell.source.replace('        if name == "out_head":\n            continue\n', "")
    return notebooks


def injection_twice(release_dir: Path = RELEASE_DIR) -> Notebooks:
    """Step 3's injection cell is run twice: nested wrappers, 2,654,208 trainable."""
    notebooks = complete_solution(release_dir)
    nb = notebooks["03_lora_injection"]
    index = next(i for i, c in enumerate(nb.cells)
                 if c.cell_type == "code" and c.source.startswith("replace_linear_with_lora(model"))
    again = nbformat.v4.new_code_cell("replace_linear_with_lora(model, rank=8, alpha=16)")
    nb.cells.insert(index + 1, again)
    return notebooks


def wrong_lora_init(release_dir: Path = RELEASE_DIR) -> Notebooks:
    """Step 1 initialises B at random: only step 1 should lose points (later steps are graded
    on the reference step 1)."""
    notebooks = complete_solution(release_dir)
    cell = _cell(notebooks["01_lora_layer"], "lora_layer")
    cell.source = cell.source.replace("torch.zeros(rank, out_dim)", "torch.randn(rank, out_dim)")
    return notebooks


def infinite_loop(release_dir: Path = RELEASE_DIR) -> Notebooks:
    """Step 2's exercise cell never ends: that notebook times out."""
    notebooks = complete_solution(release_dir)
    cell = _cell(notebooks["02_lora_wrapper"], "linear_with_lora")
    cell.source = "while True:\n    pass\n" + cell.source
    return notebooks


def killed_kernel(release_dir: Path = RELEASE_DIR) -> Notebooks:
    """Step 4 kills its own kernel: that notebook is lost, the others are graded."""
    notebooks = complete_solution(release_dir)
    cell = _cell(notebooks["04_classification_head"], "last_token_logits")
    cell.source = "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n" + cell.source
    return notebooks


def deleted_test_cell(release_dir: Path = RELEASE_DIR) -> Notebooks:
    """A visible test cell of step 1 was deleted: nbgrader restores and grades it."""
    notebooks = complete_solution(release_dir)
    nb = notebooks["01_lora_layer"]
    nb.cells = [c for c in nb.cells if _grade_id(c) != "test_lora_layer_shapes"]
    return notebooks


EXAMPLES: dict[str, Callable[[], Notebooks]] = {
    "complete": complete_solution,
    "untouched": untouched_release,
    "out_head_wrapped": out_head_wrapped,
    "injection_twice": injection_twice,
    "wrong_lora_init": wrong_lora_init,
}
ROBUSTNESS_EXAMPLES: dict[str, Callable[[], Notebooks]] = {
    "infinite_loop": infinite_loop,
    "killed_kernel": killed_kernel,
    "deleted_test_cell": deleted_test_cell,
}


def write_submission(notebooks: Notebooks, folder: Path) -> Path:
    """Write the notebooks into `folder` (created, emptied first)."""
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    for name, nb in notebooks.items():
        nbformat.write(nb, folder / f"{name}.ipynb")
    return folder


def write_examples(dest: Path, names: list[str] | None = None,
                   release_dir: Path = RELEASE_DIR) -> list[Path]:
    """Write example submissions (default: the demo's), one folder per example, into `dest`."""
    catalogue = {**EXAMPLES, **ROBUSTNESS_EXAMPLES}
    return [write_submission(catalogue[name](release_dir), dest / name)
            for name in names or list(EXAMPLES)]
