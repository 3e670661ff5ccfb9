"""helpers.carry: later notebooks reuse the student's own saved code, and say what to do when
an earlier step is missing, broken or not done yet."""

from __future__ import annotations

import inspect
import os
from pathlib import Path

import nbformat
import pytest
import torch

from autograder import solutions
from helpers.carry import CARRY_DIR_VAR, CarryForwardError, from_notebook

RELEASE_DIR = Path(__file__).parents[1] / "notebooks"


def _exercise(source: str, grade_id: str) -> nbformat.NotebookNode:
    cell = nbformat.v4.new_code_cell(source)
    cell.metadata["nbgrader"] = {"solution": True, "grade": False, "locked": False,
                                 "grade_id": grade_id, "schema_version": 3}
    return cell


def _save(folder: Path, name: str, cells: list) -> Path:
    path = folder / f"{name}.ipynb"
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# notes")] + cells)
    nbformat.write(nb, path)
    return path


@pytest.fixture
def carry_dir(tmp_path, monkeypatch):
    monkeypatch.setenv(CARRY_DIR_VAR, str(tmp_path))
    return tmp_path


def test_returns_the_students_own_objects(carry_dir):
    imports = nbformat.v4.new_code_cell("import math")
    imports.metadata["tags"] = ["carry"]
    untagged = nbformat.v4.new_code_cell("SIDE_EFFECT = 1")
    _save(carry_dir, "01_demo", [imports, untagged,
                                 _exercise("def area(r):\n    return math.pi * r * r", "area"),
                                 _exercise("def double(x):\n    return 2 * x", "double")])
    area = from_notebook("01_demo", "area")
    assert area(1.0) == pytest.approx(3.14159265)
    area_again, double = from_notebook("01_demo", "area", "double")
    assert area_again is area and double(21) == 42
    with pytest.raises(CarryForwardError, match="does not define SIDE_EFFECT"):
        from_notebook("01_demo", "SIDE_EFFECT")  # only exercise and `carry` cells run


def test_reloads_when_the_notebook_is_saved_again(carry_dir):
    path = _save(carry_dir, "01_demo", [_exercise("def f():\n    return 1", "f")])
    assert from_notebook("01_demo", "f")() == 1
    _save(carry_dir, "01_demo", [_exercise("def f():\n    return 2  # fixed", "f")])
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    assert from_notebook("01_demo", "f")() == 2


def test_an_unfinished_step_says_which_exercise_to_do(carry_dir):
    (carry_dir / "01_lora_layer.ipynb").write_bytes(
        (RELEASE_DIR / "01_lora_layer.ipynb").read_bytes())
    with pytest.raises(CarryForwardError) as error:
        from_notebook("01_lora_layer", "LoRALayer")
    message = str(error.value)
    assert "01_lora_layer.ipynb is not finished" in message
    assert "'lora_layer'" in message and "raise NotImplementedError()" in message


def test_only_the_names_asked_for_must_be_finished(carry_dir):
    stub = "def g():\n    # YOUR CODE HERE\n    raise NotImplementedError()"
    _save(carry_dir, "04_demo", [_exercise("def f():\n    return 1", "f"), _exercise(stub, "g")])
    assert from_notebook("04_demo", "f")() == 1
    with pytest.raises(CarryForwardError, match="exercise 'g'"):
        from_notebook("04_demo", "f", "g")


def test_a_finished_release_notebook_gives_working_code(carry_dir):
    nb = nbformat.read(RELEASE_DIR / "01_lora_layer.ipynb", as_version=4)
    for cell in nb.cells:
        if cell.metadata.get("nbgrader", {}).get("grade_id") == "lora_layer":
            cell.source = inspect.getsource(solutions.LoRALayer)
    nbformat.write(nb, carry_dir / "01_lora_layer.ipynb")
    layer = from_notebook("01_lora_layer", "LoRALayer")(in_dim=6, out_dim=4, rank=2, alpha=4)
    assert torch.all(layer(torch.randn(3, 6)) == 0)
    assert type(layer).__module__ == "lab_01_lora_layer"


def test_missing_broken_and_unreadable_notebooks_are_explained(carry_dir):
    with pytest.raises(CarryForwardError, match=f"01_demo.ipynb not found in .*{CARRY_DIR_VAR}"):
        from_notebook("01_demo", "f")

    (carry_dir / "02_demo.ipynb").write_text("{ not json", encoding="utf-8")
    with pytest.raises(CarryForwardError, match="02_demo.ipynb cannot be read as a notebook"):
        from_notebook("02_demo", "f")

    _save(carry_dir, "03_demo", [_exercise("def f():\n    return np.zeros(1)\nf()", "f")])
    with pytest.raises(CarryForwardError, match="cell 'f' of 03_demo.ipynb failed with NameError"
                                                ".*put its import inside that exercise cell"):
        from_notebook("03_demo", "f")

    _save(carry_dir, "05_demo", [nbformat.v4.new_code_cell("x = 1")])
    with pytest.raises(CarryForwardError, match="05_demo.ipynb has no exercise cells"):
        from_notebook("05_demo", "x")
