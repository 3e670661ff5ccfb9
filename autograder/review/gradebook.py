"""The class gradebook, OUT/gradebook.db: an ordinary nbgrader gradebook of every graded student.

Each grading worker leaves its student's private gradebook (`OUT/gradebooks/<id>.db`) and
autograded notebooks (`OUT/gradebooks/<id>/`). `refresh_class_gradebook` copies them into the
class course at OUT (nbgrader's layout: `source/lora_lab/`, `autograded/<id>/lora_lab/`,
`gradebook.db`), running nothing:

- a student new to the class gradebook, or whose autograded notebooks changed (regraded), gets
  the autograded scores and comments of their private gradebook;
- manual points, extra credit and comments an instructor entered (formgrader) are kept unless
  the answer they grade changed: a written answer's own cell (its source and attachments), or,
  for an autograded test, the notebook's solution cells.

The private gradebooks were written next to student code, so they are opened read-only and
only the rows the course defines are read, each score checked against the cell's maximum.
"""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import nbformat

from autograder.build.course import (ASSIGNMENT, gradebook_url, nbgrader_session_warnings_ignored,
                                     without_alembic_subprocess)
from autograder.review.report_rubric import REPORT_CELL
from helpers.paths import BONUS_NOTEBOOKS

PRIVATE_DIR = "gradebooks"   # OUT/gradebooks/<id>.db and OUT/gradebooks/<id>/*.ipynb
MAX_COMMENT_CHARS = 2_000


@dataclass
class _Structure:
    """The assignment as the class gradebook defines it (trusted: built from the masters)."""

    grade_cells: dict[str, dict[str, float]] = field(default_factory=dict)  # nb -> cell -> max
    solution_cells: dict[str, set[str]] = field(default_factory=dict)       # nb -> cells
    manual_cells: dict[str, set[str]] = field(default_factory=dict)         # markdown grade cells


def _gradebook(url: str):
    from nbgrader.api import Gradebook  # slow import: only when a gradebook is opened

    without_alembic_subprocess()
    return Gradebook(url, ASSIGNMENT)


def _read_only_url(path: Path) -> str:
    return f"sqlite:///file:{Path(path).resolve()}?mode=ro&uri=true"


def _structure(gb) -> _Structure:
    structure = _Structure()
    for notebook in gb.find_assignment(ASSIGNMENT).notebooks:
        structure.grade_cells[notebook.name] = {c.name: float(c.max_score)
                                                for c in notebook.grade_cells}
        structure.solution_cells[notebook.name] = {c.name for c in notebook.solution_cells}
        structure.manual_cells[notebook.name] = {c.name for c in notebook.grade_cells
                                                 if c.cell_type == "markdown"}
    return structure


def ensure_class_course(out: Path, template: Path) -> None:
    """OUT as an nbgrader course: the template's gradebook (first time) and source folder."""
    out = Path(out)
    if not (out / "gradebook.db").is_file():
        shutil.copy2(template / "gradebook.db", out / "gradebook.db")
    source = out / "source" / ASSIGNMENT
    shutil.rmtree(source, ignore_errors=True)
    shutil.copytree(template / "source" / ASSIGNMENT, source)
    (out / "autograded").mkdir(exist_ok=True)


@dataclass
class _PrivateRows:
    auto_scores: dict[tuple[str, str], float | None]
    auto_comments: dict[tuple[str, str], str | None]


def _checked_score(value, maximum: float, where: str) -> float | None:
    if value is None:
        return None
    score = float(value)
    if not math.isfinite(score) or not 0 <= score <= maximum:
        raise ValueError(f"{where}: score {value!r} outside 0..{maximum:g}")
    return score


def read_private_gradebook(path: Path, student: str, structure: _Structure) -> _PrivateRows:
    """The autograded scores and comments of `student` in a private gradebook (read-only)."""
    from nbgrader.api import MissingEntry

    scores, comments = {}, {}
    try:
        with _gradebook(_read_only_url(path)) as gb:
            for notebook, cells in structure.grade_cells.items():
                for cell, maximum in cells.items():
                    grade = gb.find_grade(cell, notebook, ASSIGNMENT, student)
                    scores[notebook, cell] = _checked_score(grade.auto_score, maximum,
                                                            f"{path}: {notebook}:{cell}")
                for cell in structure.solution_cells[notebook]:
                    text = gb.find_comment(cell, notebook, ASSIGNMENT, student).auto_comment
                    comments[notebook, cell] = None if text is None else str(text)[:MAX_COMMENT_CHARS]
    except MissingEntry as error:
        raise ValueError(f"{path}: {error}") from None
    return _PrivateRows(scores, comments)


def _answers(folder: Path) -> dict[str, dict[str, str]]:
    """notebook -> solution cell grade_id -> its source and attachments, from `folder`."""
    answers = {}
    for path in sorted(Path(folder).glob("*.ipynb")) if Path(folder).is_dir() else []:
        try:
            nb = nbformat.read(path, as_version=4)
        except Exception:  # unreadable: no answers to compare with
            continue
        answers[path.stem] = {
            str(cell.metadata["nbgrader"].get("grade_id")):
                str(cell.source) + json.dumps(cell.get("attachments", {}), sort_keys=True)
            for cell in nb.cells
            if isinstance(cell.get("metadata", {}).get("nbgrader"), dict)
            and cell.metadata["nbgrader"].get("solution")}
    return answers


def _notebook_files(folder: Path) -> dict[str, bytes]:
    if not Path(folder).is_dir():
        return {}
    return {p.name: p.read_bytes() for p in sorted(Path(folder).glob("*.ipynb"))
            if p.is_file() and not p.is_symlink()}


def _import_student(gb, out: Path, student: str, rows: _PrivateRows, structure: _Structure,
                    new_notebooks: dict[str, bytes]) -> None:
    from nbgrader.api import MissingEntry

    course_copy = out / "autograded" / student / ASSIGNMENT
    old = _answers(course_copy)
    gb.update_or_create_student(student)
    try:
        gb.find_submission(ASSIGNMENT, student)
    except MissingEntry:
        with nbgrader_session_warnings_ignored():
            gb.add_submission(ASSIGNMENT, student)
    shutil.rmtree(course_copy, ignore_errors=True)
    course_copy.mkdir(parents=True)
    for name, data in new_notebooks.items():
        (course_copy / name).write_bytes(data)
    new = _answers(course_copy)

    def unchanged(notebook: str, cell: str | None) -> bool:
        if notebook not in old or notebook not in new:
            return False
        if cell is None:  # an autograded test: the code it tests
            return old[notebook] == new[notebook]
        return old[notebook].get(cell) == new[notebook].get(cell)

    for (notebook, cell), auto_score in rows.auto_scores.items():
        grade = gb.find_grade(cell, notebook, ASSIGNMENT, student)
        grade.auto_score = auto_score
        answer = cell if cell in structure.solution_cells[notebook] else None
        if not unchanged(notebook, answer):
            grade.manual_score = grade.extra_credit = None
        grade.needs_manual_grade = grade.auto_score is None and grade.manual_score is None
    for (notebook, cell), text in rows.auto_comments.items():
        comment = gb.find_comment(cell, notebook, ASSIGNMENT, student)
        comment.auto_comment = text
        if not unchanged(notebook, cell):
            comment.manual_comment = None
    gb.db.commit()


def refresh_class_gradebook(out: Path, template: Path) -> list[str]:
    """Bring OUT/gradebook.db up to date with OUT/gradebooks; the students (re)imported.

    template: a course folder made by `autograder.grade.runner.prepare_template` (its gradebook
    starts the class gradebook; its source folder is the class course's). A private gradebook
    that does not hold what the course defines is skipped, with a message; so is everything
    when the masters' graded cells changed since the class gradebook was made.
    """
    out = Path(out)
    ensure_class_course(out, template)
    with _gradebook(gradebook_url(template)) as gb:
        wanted = _structure(gb)
    imported = []
    with _gradebook(gradebook_url(out)) as gb:
        structure = _structure(gb)
        if structure != wanted:
            print(f"class gradebook NOT updated: the masters' graded cells changed since "
                  f"{out / 'gradebook.db'} was made. Grade into a new folder, or move that "
                  "file away to rebuild it (points entered there are not carried over).")
            return imported
        known = {s.student.id for s in gb.find_assignment(ASSIGNMENT).submissions}
        for private in sorted((out / PRIVATE_DIR).glob("*.db")):
            student = private.stem
            notebooks = _notebook_files(out / PRIVATE_DIR / student)
            current = _notebook_files(out / "autograded" / student / ASSIGNMENT)
            if student in known and notebooks == current:
                continue
            try:
                rows = read_private_gradebook(private, student, structure)
            except Exception as error:  # a damaged or tampered file: that student only
                print(f"class gradebook: {student} not updated: {error}")
                continue
            _import_student(gb, out, student, rows, structure, notebooks)
            imported.append(student)
    return imported


def manual_cells(out: Path) -> dict[str, list[str]]:
    """notebook -> its cells graded by hand (written answers, the report), from OUT/gradebook.db."""
    with _gradebook(gradebook_url(out)) as gb:
        structure = _structure(gb)
    return {notebook: sorted(cells) for notebook, cells in sorted(structure.manual_cells.items())
            if cells}


class ManualPoints(NamedTuple):
    """Points graded by hand, from OUT/gradebook.db. Columns: the written answers' grade ids
    (q1...) and `report_points`."""

    points: dict[str, dict[str, float | None]]   # student -> column -> points; None: not graded
    maxima: dict[str, float]                     # column -> maximum
    bonus: frozenset[str] = frozenset()          # the columns of the bonus notebooks


def manual_points(out: Path) -> ManualPoints:
    """Points graded by hand in OUT/gradebook.db (empty when there is no class gradebook). An
    answer in a notebook the student did not hand in counts 0, with nothing left to grade."""
    from nbgrader.api import MissingEntry

    if not (Path(out) / "gradebook.db").is_file():
        return ManualPoints({}, {})
    with _gradebook(gradebook_url(out)) as gb:
        structure = _structure(gb)
        cells = [(notebook, cell) for notebook in sorted(structure.manual_cells)
                 for cell in sorted(structure.manual_cells[notebook])]
        maxima = {_column(cell): structure.grade_cells[notebook][cell] for notebook, cell in cells}
        points: dict[str, dict[str, float | None]] = {}
        for submission in gb.find_assignment(ASSIGNMENT).submissions:
            student = submission.student.id
            row = points.setdefault(student, {})
            for notebook, cell in cells:
                try:
                    grade = gb.find_grade(cell, notebook, ASSIGNMENT, student)
                except MissingEntry:
                    row[_column(cell)] = 0.0
                    continue
                graded = grade.manual_score is not None or grade.auto_score is not None
                row[_column(cell)] = float(grade.score) if graded else None
    bonus = frozenset(_column(cell) for notebook, cell in cells if notebook in BONUS_NOTEBOOKS)
    return ManualPoints(points, maxima, bonus)


def _column(cell: str) -> str:
    return "report_points" if cell == REPORT_CELL else cell
