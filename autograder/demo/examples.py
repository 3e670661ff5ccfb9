"""Example submissions, made from the release and the masters: the complete solution, the
untouched release, classic mistakes seen in real submissions of this lab, and hostile ones.

Each is a dict of the six notebooks as a student would hand them in (`write_submission`
writes one into a folder); `autograder.demo.hand_in` runs them like a student.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable

import nbformat

from autograder.build.course import RELEASE_DIR
from autograder.build.notebook_source import MASTERS_DIR, NOTEBOOK_NAMES, parse_master

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


def with_written_answers(answers: dict[str, str], release_dir: Path = RELEASE_DIR) -> Notebooks:
    """The complete solution with written answers (grade id -> markdown, e.g. {"q1": ...})."""
    notebooks = complete_solution(release_dir)
    cells = {_grade_id(c): c for nb in notebooks.values() for c in nb.cells}
    for grade_id, text in answers.items():
        cells[grade_id].source = text
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


def edited_test_cell(release_dir: Path = RELEASE_DIR) -> Notebooks:
    """Step 1 initialises B at random and its failing test was edited into a print: nbgrader
    grades the original test, so the points are those of `wrong_lora_init`."""
    notebooks = wrong_lora_init(release_dir)
    _cell(notebooks["01_lora_layer"], "test_lora_layer_zero_at_init").source = 'print("all good")'
    return notebooks


def deleted_test_cell(release_dir: Path = RELEASE_DIR) -> Notebooks:
    """A visible test cell of step 1 was deleted: nbgrader restores and grades it."""
    notebooks = complete_solution(release_dir)
    nb = notebooks["01_lora_layer"]
    nb.cells = [c for c in nb.cells if _grade_id(c) != "test_lora_layer_shapes"]
    return notebooks


def flooded_output(release_dir: Path = RELEASE_DIR) -> Notebooks:
    """Step 3 prints a 3-million-character line, a million lines, then a huge HTML output:
    grading stops recording past its budget, keeps a capped amount, the points do not change."""
    notebooks = complete_solution(release_dir)
    cell = _cell(notebooks["03_lora_injection"], "replace_linear_with_lora")
    cell.source = ('from IPython.display import HTML, display\n'
                   'print("x" * 3_000_000)\n'
                   'for i in range(1_000_000):\n'
                   '    print(f"line {i}")\n'
                   'display(HTML("<b>" + "y" * 3_000_000 + "</b>"))\n' + cell.source)
    return notebooks


TAMPER_TARGETS = ("checks/_tamper_probe.py", "results/tamper_probe.json")


def tampering(release_dir: Path = RELEASE_DIR) -> Notebooks:
    """Step 1 is right, then tries to write a file among the hidden checks and a fake result
    among the other students' (TAMPER_TARGETS): both must be refused."""
    notebooks = complete_solution(release_dir)
    notebooks["01_lora_layer"].cells.append(nbformat.v4.new_code_cell(
        "import pathlib\n"
        "import autograder\n"
        "out = next(p for p in pathlib.Path.cwd().parents if (p / 'staging').is_dir())\n"
        f"targets = [pathlib.Path(autograder.__file__).parent / {TAMPER_TARGETS[0]!r},\n"
        f"           out / {TAMPER_TARGETS[1]!r}]\n"
        "for target in targets:\n"
        "    try:\n"
        "        target.write_text('{}')\n"
        "        print('written', target)\n"
        "    except OSError as error:\n"
        "        print('refused', target, error)\n"))
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
    "edited_test_cell": edited_test_cell,
    "flooded_output": flooded_output,
    "tampering": tampering,
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
