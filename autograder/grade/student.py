"""Grading one student: nbgrader autograde, one notebook at a time, in a private course copy.

`grade_student` runs in its own process (see `autograder.grade.worker`) so that nothing a student's
code does can reach another student's grade. For each notebook it:

1. checks the file is there and is a readable notebook (else: `notebook missing` /
   `notebook unreadable`, zero points for that notebook only);
2. runs `nbgrader autograde` on that notebook alone, in a kernel of its own, so a crash costs
   that notebook only; deleted or edited test cells are restored from the masters by
   nbgrader; each cell has a timeout (longer for cells tagged
   `training`); outputs are capped in size while they are recorded and in the graded copy
   (`output_limits`);
3. reads every graded cell's points from the private gradebook and renders feedback HTML.

The kernels are forked from one process per student that has imported torch and the helpers
(`forked_kernels`): a fresh process per notebook without paying an interpreter start and
`import torch` each time, each started while the notebook before it runs. One nbgrader API
object serves the notebooks.

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
from collections.abc import Callable
from pathlib import Path

import nbformat
from nbclient.exceptions import CellTimeoutError, DeadKernelError
from traitlets.config import Config

from autograder.build.course import (ASSIGNMENT, gradebook_url, nbgrader_api,
                                     nbgrader_session_warnings_ignored)
from autograder.build.notebook_source import NOTEBOOK_NAMES
from autograder.grade.results import (FAILED, GRADED, KERNEL_DIED, MISSING, TIMED_OUT, TRAINING_TAG,
                                      UNREADABLE, GradeOptions, NotebookResult, StudentResult,
                                      write_atomically)
from autograder.grade.environment import grading_environment
from autograder.grade.forked_kernels import plan_kernels, start_fork_server
from autograder.grade.staging import lost_in_staging
from autograder.review.report_rubric import REPORT_CELL, REPORT_NOTEBOOK, report_submission
from helpers.report_check import ReportCheck, check_report

# What a notebook imports that takes seconds beyond torch and the helpers: its kernel, started
# while the notebooks before it run, imports them then (`forked_kernels.plan_kernels`).
SLOW_IMPORTS = {"07_peft": ("transformers.models.gpt2.modeling_gpt2", "peft", "helpers.hf_bridge")}


def _timeout_for(options: GradeOptions):
    def timeout(cell) -> int:
        tags = cell.get("metadata", {}).get("tags", [])
        return options.training_timeout if TRAINING_TAG in tags else options.cell_timeout
    return timeout


def autograde_config(options: GradeOptions, sockets: Path) -> Config:
    """nbgrader settings for autograding this lab's notebooks (the defaults are wrong for it).

    Kernels are forked from a process that has imported torch and the helpers
    (`forked_kernels`) and talk over Unix sockets named after `sockets` (an absolute path
    prefix), so they need no network interface at all.
    """
    from autograder.grade.output_limits import autograde_steps  # imports nbgrader: only when grading

    c = Config()
    c.ExecuteWithOutputBudget.kernel_manager_class = \
        "autograder.grade.forked_kernels.ForkedKernelManager"
    c.Execute.timeout = options.cell_timeout
    c.Execute.timeout_func = _timeout_for(options)
    c.Execute.interrupt_on_timeout = True
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


def _read_scores(root: Path, student: str, graded: list[NotebookResult]) -> None:
    """Each graded notebook's points, from the student's private gradebook."""
    from nbgrader.api import Gradebook

    with Gradebook(gradebook_url(root)) as gb:
        for result in graded:
            submission = gb.find_submission_notebook(result.name, ASSIGNMENT, student)
            for grade in submission.grades:
                if grade.name in result.tests:
                    result.tests[grade.name] = float(grade.auto_score or 0.0)
            result.score = sum(result.tests.values())


def _points_possible(root: Path) -> dict[str, tuple[dict[str, float], dict[str, float]]]:
    """Per notebook: (autograded test cells, written answers graded by hand): grade_id -> max."""
    from nbgrader.api import Gradebook

    possible = {}
    with Gradebook(gradebook_url(root)) as gb:
        for name in NOTEBOOK_NAMES:
            cells = gb.find_notebook(name, ASSIGNMENT).grade_cells
            possible[name] = ({c.name: float(c.max_score) for c in cells if c.cell_type == "code"},
                              {c.name: float(c.max_score) for c in cells if c.cell_type != "code"})
    return possible


def _readable(path: Path) -> bool:
    try:
        nbformat.validate(nbformat.read(path, as_version=4))
        return True
    except Exception:  # any parse or schema error means the same thing here
        return False


def _submission_problem(staged: Path, file_name: str) -> str | None:
    """MISSING or UNREADABLE when the staged notebook cannot be graded, else None."""
    source = staged / file_name
    if not source.is_file():
        # a damaged zip may have held it; a file merely skipped does not make it unreadable
        return UNREADABLE if lost_in_staging(staged, file_name) else MISSING
    return None if _readable(source) else UNREADABLE


def warm_up(workdir: Path) -> None:
    """What grading in `workdir` needs before the template and the student's files: the
    grading environment and the fork server, which starts importing torch and the helpers and
    building the models (`kernel_warmup`). Once is enough; again does nothing."""
    os.environ.update(grading_environment(workdir / "course" / "source" / ASSIGNMENT,
                                          workdir / "env"))
    start_fork_server()


def grade_student(template: Path, staged: Path, student: str, workdir: Path,
                  feedback_dir: Path, options: GradeOptions, sockets_dir: Path,
                  nearly_done: Callable[[], None] = lambda: None) -> StudentResult:
    """Grade one student's staged files in a private copy of the template course.

    sockets_dir: where the kernels' Unix sockets go; its path must stay short (under about
    100 characters with the socket names). nearly_done: called once the notebooks have run, before
    the scores, the report and the feedback (the runner then starts the next student's worker:
    see `worker --notify-fd`).
    """
    start = time.perf_counter()
    warm_up(workdir)  # the fork server imports torch and the helpers while nbgrader gets ready
    root = workdir / "course"
    shutil.copytree(template, root)
    submitted = root / "submitted" / student / ASSIGNMENT
    submitted.mkdir(parents=True)
    api = nbgrader_api(root, autograde_config(options, sockets_dir / "kernel"))
    possible = _points_possible(root)
    problems = {name: _submission_problem(staged, f"{name}.ipynb") for name in NOTEBOOK_NAMES}
    plan_kernels([SLOW_IMPORTS.get(name, ()) for name, problem in problems.items()
                  if problem is None])
    results, graded = [], []
    for name in NOTEBOOK_NAMES:
        nb_start = time.perf_counter()
        auto, manual = possible[name]
        result = NotebookResult(name, GRADED, max_score=sum(auto.values()), max_tests=auto,
                                tests=dict.fromkeys(auto, 0.0), manual=manual)
        if problems[name] is not None:
            result.status = problems[name]
        else:
            shutil.copy2(staged / f"{name}.ipynb", submitted / f"{name}.ipynb")
            if _autograde_one(api, root, student, name, result):
                graded.append(result)
        result.seconds = round(time.perf_counter() - nb_start, 2)
        results.append(result)
    nearly_done()  # no kernel runs from here on: one core is enough for the rest
    _read_scores(root, student, graded)
    for result in graded:
        _record_failures(root, student, result)
    report = check_report(staged)  # the student's own outputs, not the grading-mode rerun
    _record_report(root, student, staged, report, options, sockets_dir)
    feedback = _generate_feedback(root, student)
    if feedback is not None:
        shutil.copytree(feedback, feedback_dir, dirs_exist_ok=True)
    feedback_dir.mkdir(parents=True, exist_ok=True)
    write_atomically(feedback_dir / "rapport.html", report.to_html())
    return StudentResult(student, results, seconds=round(time.perf_counter() - start, 2),
                         report=report.summary_columns())


def _autograded_path(root: Path, student: str, name: str) -> Path:
    return root / "autograded" / student / ASSIGNMENT / f"{name}.ipynb"


def _autograde_one(api, root: Path, student: str, name: str, result: NotebookResult) -> bool:
    """nbgrader autograde of notebook `name` alone; False (status set) when it failed."""
    from autograder.grade.output_limits import ExecuteWithOutputBudget

    api.coursedir.notebook_id = name
    with nbgrader_session_warnings_ignored():
        outcome = api.autograde(ASSIGNMENT, student, force=True, create=True)
    autograded = _autograded_path(root, student, name)
    if not outcome.get("success") or not autograded.is_file():
        failure = ExecuteWithOutputBudget.last_failure
        died = failure is not None and issubclass(failure, DeadKernelError)
        result.status = KERNEL_DIED if died else FAILED
        result.failed["_grading"] = ((outcome.get("error") or "") + (outcome.get("log") or ""))[-1500:]
        return False
    result.status = _notebook_status(autograded)
    return True


def _record_failures(root: Path, student: str, result: NotebookResult) -> None:
    """The error of each test cell that lost points, for the grades table."""
    nb = nbformat.read(_autograded_path(root, student, result.name), as_version=4)
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
    config = autograde_config(options, sockets_dir / "kernel")
    config.CourseDirectory.notebook_id = REPORT_NOTEBOOK
    config.Autograde.autograde_preprocessors = [
        step for step in config.Autograde.autograde_preprocessors if not issubclass(step, Execute)]
    with nbgrader_session_warnings_ignored():
        outcome = nbgrader_api(root, config).autograde(ASSIGNMENT, student, force=True,
                                                       create=True)
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
