"""No stale grade: a result stores the grader's fingerprint (masters, checks, solutions,
helpers, options); a run after any of them changed regrades every student and says why."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from autograder.demo.examples import complete_solution, write_submission
from autograder.grade.fingerprint import changed_parts, grader_fingerprint
from autograder.grade.results import GradeOptions, StudentResult

ROOT = Path(__file__).parents[1]


def _copy_of_the_grader(dest: Path) -> Path:
    """The packages a grading run imports, copied: the tests edit the copy, never the repo."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for package in ("autograder", "helpers"):
        shutil.copytree(ROOT / package, dest / package, ignore=ignore)
    for name in ("pyproject.toml", "rapport_template.md"):
        shutil.copy2(ROOT / name, dest / name)
    return dest


def _break_the_scaling_check(root: Path) -> None:
    path = root / "autograder" / "checks" / "lora_layer.py"
    text = path.read_text(encoding="utf-8")
    marker = '    """`scaling` is alpha / rank."""\n'
    assert marker in text
    path.write_text(text.replace(marker, marker + '    raise AssertionError("a stricter check")\n'),
                    encoding="utf-8")


def test_fingerprint_names_each_part_that_changed(tmp_path):
    root = _copy_of_the_grader(tmp_path / "grader")
    before = grader_fingerprint(GradeOptions(), root)
    assert {"autograder/checks/lora_layer.py", "autograder/masters/01_lora_layer.md",
            "autograder/solutions.py", "helpers/carry.py", "options"} <= set(before)
    assert not any(name.startswith("autograder/grade/") for name in before)
    assert changed_parts(before, grader_fingerprint(GradeOptions(), root)) == []
    _break_the_scaling_check(root)
    (root / "helpers" / "new_helper.py").write_text("VALUE = 1\n", encoding="utf-8")
    after = grader_fingerprint(GradeOptions(cell_timeout=30), root)
    assert changed_parts(before, after) == ["checks/lora_layer.py", "helpers/new_helper.py",
                                            "options"]
    assert changed_parts({}, after) == ["unknown grader"]  # a result from before fingerprints
    with pytest.raises(FileNotFoundError, match="not the grader's repository"):
        grader_fingerprint(GradeOptions(), tmp_path / "empty")


def _grade(grader: Path, submissions: Path, out: Path) -> str:
    run = subprocess.run(
        [sys.executable, "-m", "autograder", "grade", str(submissions), "--out", str(out),
         "--jobs", "1"], cwd=grader, capture_output=True, text=True, timeout=1200,
        env={**os.environ, "PYTHONPATH": str(grader)})
    assert run.returncode == 0, run.stdout + run.stderr
    return run.stdout


def _points(out: Path, student: str) -> dict[str, float]:
    result = StudentResult.from_json((out / "results" / f"{student}.json").read_text())
    return result.notebooks[0].tests


@pytest.mark.slow
def test_a_changed_check_regrades_every_student(tmp_path):
    grader = _copy_of_the_grader(tmp_path / "grader")
    submissions = tmp_path / "submissions"
    notebook = {"01_lora_layer": complete_solution()["01_lora_layer"]}  # one notebook: fast
    write_submission(notebook, submissions / "alice")
    out = tmp_path / "out"
    first = _grade(grader, submissions, out)
    assert "grader changed" not in first and "skipped" not in first
    assert _points(out, "alice")["hidden_lora_layer_scaling"] == 1.0
    second = _grade(grader, submissions, out)
    assert "already graded, unchanged (skipped): 1" in second and "grader changed" not in second
    _break_the_scaling_check(grader)
    third = _grade(grader, submissions, out)
    assert ("grader changed since the last run (checks/lora_layer.py): regrading all 1 student\n"
            in third)
    assert "skipped" not in third
    points = _points(out, "alice")
    assert points["hidden_lora_layer_scaling"] == 0.0  # the new check's grade
    assert sum(points.values()) == 5.0
