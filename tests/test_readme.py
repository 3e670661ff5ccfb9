"""README.md stays true: its test command is CI's, its tables match the masters and the demo."""

from __future__ import annotations

import re
from pathlib import Path

from autograder.demo.examples import EXAMPLES
from autograder.build.notebook_source import NOTEBOOK_NAMES, load_master
from helpers.paths import LAB_NOTEBOOKS

ROOT = Path(__file__).parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _table_rows(header_start: str) -> list[list[str]]:
    """Cells of the markdown table whose header line starts with `header_start`."""
    lines = README[README.index(header_start):].splitlines()
    rows = []
    for line in lines[2:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def _graded_cells(name: str) -> list:
    return [cell for cell in load_master(name).cells
            if cell.metadata.get("nbgrader", {}).get("grade")]


def _master_points(name: str) -> dict[str, float]:
    points = {"visible": 0.0, "hidden": 0.0, "manual": 0}
    for cell in _graded_cells(name):
        grading = cell.metadata["nbgrader"]
        if cell.cell_type == "markdown":
            points["manual"] += 1
        else:
            kind = "hidden" if grading["grade_id"].startswith("hidden_") else "visible"
            points[kind] += grading["points"]
    return points


def test_readme_test_command_is_what_ci_runs():
    command = "pip install -r requirements-test.txt && python -m pytest"
    assert f"\n{command}\n" in README
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert command.replace("pip install -r", "pip install -q -r") in ci


def test_readme_points_table_matches_the_masters():
    rows = {row[0]: row for row in _table_rows("| notebook | visible tests (points) |")}
    assert sorted(rows) == sorted(NOTEBOOK_NAMES)
    for name in NOTEBOOK_NAMES:
        points = _master_points(name)
        _, visible, hidden, manual = rows[name]
        assert (float(visible), float(hidden)) == (points["visible"], points["hidden"]), name
        assert len(re.findall(r"Q\d", manual)) == points["manual"], name


def test_readme_lists_every_graded_cell_with_its_points():
    rows = {row[0]: row[1] for row in _table_rows("| notebook | graded cells |")}
    for name in NOTEBOOK_NAMES:
        cells = [(c.metadata["nbgrader"]["grade_id"], c.metadata["nbgrader"]["points"])
                 for c in _graded_cells(name)]
        listed = [(grade_id, float(points))
                  for grade_id, points in re.findall(r"`(\w+)` (\d+)", rows[name])]
        assert listed == cells, name


def test_readme_demo_table_lists_the_demo_students_with_full_marks_for_complete():
    block = README[README.index("         student  total"):].split("```")[0].splitlines()
    rows = {line.split()[0]: line.split() for line in block[1:] if line.strip()}
    assert set(rows) == set(EXAMPLES) | {"invented_number"}
    full = [points["visible"] + points["hidden"]
            for points in map(_master_points, NOTEBOOK_NAMES)]
    complete = rows["complete"]
    assert [float(v) for v in complete[3:3 + len(full)]] == full
    required = sum(full[:len(LAB_NOTEBOOKS)])  # the bonus notebooks are not in the total
    assert float(complete[1]) == float(complete[2]) == required
