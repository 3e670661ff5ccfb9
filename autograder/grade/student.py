"""Grading one student: nbgrader autograde, one notebook at a time, in a private course copy.

`grade_student` runs in its own process (see `autograder.grade.worker`) so that nothing a student's
code does can reach another student's grade. For each notebook it:

1. checks the file is there and is a readable notebook (else: `notebook missing` /
   `notebook unreadable`, zero points for that notebook only);
2. runs `nbgrader autograde` on that notebook alone, so a crash costs that notebook only;
   deleted or edited test cells are restored from the masters by nbgrader; a dead kernel is
   retried once; each cell has a timeout (longer for cells tagged `training`); outputs are
   capped in size while they are recorded and in the graded copy (`output_limits`);
3. reads every graded cell's points from the private gradebook and renders feedback HTML.

It then checks `rapport.md` against the student's own executed notebooks
(`helpers.report_check`): three report columns in grades.csv, `rapport.html` in the feedback;
and records the report, with those findings, as the course's `rapport` notebook (one written
answer graded by hand in formgrader, see `autograder.review.report_rubric`; nothing executed).
`keep_graded_files` leaves the private gradebook and the autograded notebooks to the runner,
which builds the class gradebook from them (`autograder.review.gradebook`).

Earlier notebooks are loaded from the masters (`LORA_LAB_CARRY_DIR`), so each step is graded on
a correct base. The result is written atomically as JSON.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import nbformat
from nbclient.exceptions import CellTimeoutError, DeadKernelError
from traitlets.config import Config

from autograder.build.course import ASSIGNMENT, gradebook_url, nbgrader_api
from autograder.build.notebook_source import NOTEBOOK_NAMES
from autograder.grade.results import (FAILED, GRADED, KERNEL_DIED, MISSING, TIMED_OUT, TRAINING_TAG,
                                      UNREADABLE, GradeOptions, NotebookResult, StudentResult,
                                      write_atomically)
from autograder.grade.environment import grading_environment
from autograder.grade.staging import lost_in_staging
from autograder.review.report_rubric import REPORT_CELL, REPORT_NOTEBOOK, report_submission
from helpers.report_check import ReportCheck, check_report

def _timeout_for(options: GradeOptions):
    def timeout(cell) -> int:
        tags = cell.get("metadata", {}).get("tags", [])
        return options.training_timeout if TRAINING_TAG in tags else options.cell_timeout
    return timeout


def autograde_config(options: GradeOptions, notebook: str, sockets: Path) -> Config:
    """nbgrader settings for grading one notebook (the defaults are wrong for this lab).

    Kernels talk over Unix sockets named after `sockets` (an absolute path prefix), so they
    need no network interface at all.
    """
    from autograder.grade.output_limits import autograde_steps  # imports nbgrader: only when grading

    c = Config()
    c.CourseDirectory.notebook_id = notebook
    c.Execute.timeout = options.cell_timeout
    c.Execute.timeout_func = _timeout_for(options)
    c.Execute.interrupt_on_timeout = True
    c.Execute.execute_retries = 1                 # a dead kernel is retried once
    c.Execute.raise_on_iopub_timeout = False
    c.KernelManager.transport = "ipc"
    c.KernelManager.ip = str(sockets)
    c.OverwriteCells.add_missing_cells = True     # deleted test cells come back and are graded
    c.LimitOutput.max_lines = options.max_output_lines
    c.LimitOutput.max_traceback = 50
    c.Autograde.autograde_preprocessors = autograde_steps()
    c.ExecuteWithOutputBudget.max_cell_output_chars = options.max_cell_output_chars
    c.CapOutputSize.max_chars = options.max_output_chars
    c.ClearMetadataPreprocessor.enabled = False
    return c


def _failure_summary(cell) -> str:
    for output in cell.get("outputs", []):
        if output.get("output_type") == "error":
            return f"{output.get('ename')}: {output.get('evalue')}"[:500]
    return ""


def _notebook_status(autograded: Path) -> str:
    nb = nbformat.read(autograded, as_version=4)
    names = {o.get("ename") for c in nb.cells for o in c.get("outputs", [])
             if o.get("output_type") == "error"}
    return TIMED_OUT if CellTimeoutError.__name__ in names else GRADED


def _read_scores(root: Path, student: str, notebook: str, result: NotebookResult) -> None:
    from nbgrader.api import Gradebook

    with Gradebook(gradebook_url(root)) as gb:
        submission = gb.find_submission_notebook(notebook, ASSIGNMENT, student)
        for grade in submission.grades:
            if grade.name in result.tests:
                result.tests[grade.name] = float(grade.auto_score or 0.0)
    result.score = sum(result.tests.values())


def _points_possible(root: Path, notebook: str) -> tuple[dict[str, float], dict[str, float]]:
    """(autograded test cells, written answers graded by hand): grade_id -> max points."""
    from nbgrader.api import Gradebook

    with Gradebook(gradebook_url(root)) as gb:
        cells = gb.find_notebook(notebook, ASSIGNMENT).grade_cells
        auto = {c.name: float(c.max_score) for c in cells if c.cell_type == "code"}
        manual = {c.name: float(c.max_score) for c in cells if c.cell_type != "code"}
    return auto, manual


def _readable(path: Path) -> bool:
    try:
        nbformat.validate(nbformat.read(path, as_version=4))
        return True
    except Exception:  # any parse or schema error means the same thing here
        return False


def grade_student(template: Path, staged: Path, student: str, workdir: Path,
                  feedback_dir: Path, options: GradeOptions, sockets_dir: Path) -> StudentResult:
    """Grade one student's staged files in a private copy of the template course.

    sockets_dir: where the kernels' Unix sockets go; its path must stay short (under about
    100 characters with the socket names).
    """
    start = time.perf_counter()
    root = workdir / "course"
    shutil.copytree(template, root)
    submitted = root / "submitted" / student / ASSIGNMENT
    submitted.mkdir(parents=True)
    os.environ.update(grading_environment(root / "source" / ASSIGNMENT, workdir / "env"))
    results = []
    for name in NOTEBOOK_NAMES:
        nb_start = time.perf_counter()
        auto, manual = _points_possible(root, name)
        result = NotebookResult(name, GRADED, max_score=sum(auto.values()), max_tests=auto,
                                tests=dict.fromkeys(auto, 0.0), manual=manual)
        source = staged / f"{name}.ipynb"
        if not source.is_file():
            # a damaged zip may have held it; a file merely skipped does not make it unreadable
            result.status = UNREADABLE if lost_in_staging(staged, source.name) else MISSING
        elif not _readable(source):
            result.status = UNREADABLE
        else:
            shutil.copy2(source, submitted / source.name)
            _autograde_one(root, student, name, options, result, sockets_dir)
        result.seconds = round(time.perf_counter() - nb_start, 2)
        results.append(result)
    report = check_report(staged)  # the student's own outputs, not the grading-mode rerun
    _record_report(root, student, staged, report, options, sockets_dir)
    feedback = _generate_feedback(root, student)
    if feedback is not None:
        shutil.copytree(feedback, feedback_dir, dirs_exist_ok=True)
    feedback_dir.mkdir(parents=True, exist_ok=True)
    write_atomically(feedback_dir / "rapport.html", report.to_html())
    return StudentResult(student, results, seconds=round(time.perf_counter() - start, 2),
                         report=report.summary_columns())


def _autograde_one(root: Path, student: str, name: str, options: GradeOptions,
                   result: NotebookResult, sockets_dir: Path) -> None:
    from autograder.grade.output_limits import ExecuteWithOutputBudget

    api = nbgrader_api(root, autograde_config(options, name, sockets_dir / "kernel"))
    outcome = api.autograde(ASSIGNMENT, student, force=True, create=True)
    autograded = root / "autograded" / student / ASSIGNMENT / f"{name}.ipynb"
    if not outcome.get("success") or not autograded.is_file():
        failure = ExecuteWithOutputBudget.last_failure
        died = failure is not None and issubclass(failure, DeadKernelError)
        result.status = KERNEL_DIED if died else FAILED
        result.failed["_grading"] = ((outcome.get("error") or "") + (outcome.get("log") or ""))[-1500:]
        return
    result.status = _notebook_status(autograded)
    _read_scores(root, student, name, result)
    nb = nbformat.read(autograded, as_version=4)
    for cell in nb.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if grade_id in result.max_tests and result.tests.get(grade_id, 0) < result.max_tests[grade_id]:
            summary = _failure_summary(cell)
            if summary:
                result.failed[grade_id] = summary


def _record_report(root: Path, student: str, staged: Path, report: ReportCheck,
                   options: GradeOptions, sockets_dir: Path) -> None:
    """nbgrader autograde of the `rapport` notebook made from rapport.md: no cell is executed,
    the report's points box is left for the instructor (0 and nothing to grade if absent)."""
    from nbgrader.api import Gradebook
    from nbgrader.preprocessors import Execute

    with Gradebook(gradebook_url(root)) as gb:
        checksum = gb.find_source_cell(REPORT_CELL, REPORT_NOTEBOOK, ASSIGNMENT).checksum
    master = nbformat.read(root / "source" / ASSIGNMENT / f"{REPORT_NOTEBOOK}.ipynb", as_version=4)
    nbformat.write(report_submission(master, staged, report, checksum),
                   root / "submitted" / student / ASSIGNMENT / f"{REPORT_NOTEBOOK}.ipynb")
    config = autograde_config(options, REPORT_NOTEBOOK, sockets_dir / "kernel")
    config.Autograde.autograde_preprocessors = [
        step for step in config.Autograde.autograde_preprocessors if not issubclass(step, Execute)]
    outcome = nbgrader_api(root, config).autograde(ASSIGNMENT, student, force=True, create=True)
    if not outcome.get("success"):
        raise RuntimeError(f"recording {REPORT_NOTEBOOK} failed: {outcome.get('log')}"[-1500:])


def keep_graded_files(workdir: Path, student: str, dest: Path) -> None:
    """Copy the private gradebook and the autograded notebooks of `grade_student`'s course in
    `workdir` to dest/gradebook.db and dest/autograded/."""
    root = workdir / "course"
    shutil.copy2(root / "gradebook.db", dest / "gradebook.db")
    (dest / "autograded").mkdir(exist_ok=True)
    for notebook in (root / "autograded" / student / ASSIGNMENT).glob("*.ipynb"):
        shutil.copy2(notebook, dest / "autograded" / notebook.name)


def _generate_feedback(root: Path, student: str) -> Path | None:
    if not (root / "autograded" / student / ASSIGNMENT).is_dir():
        return None
    c = Config()
    c.CourseDirectory.notebook_id = "*"
    api = nbgrader_api(root, c)
    outcome = api.generate_feedback(ASSIGNMENT, student, force=True)
    folder = root / "feedback" / student / ASSIGNMENT
    return folder if outcome.get("success") and folder.is_dir() else None
