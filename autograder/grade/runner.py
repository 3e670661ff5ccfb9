"""Grading a whole class: stage, grade every student in its own process, merge, summarise.

    stage_submissions -> OUT/staging/<student>/
    prepare_template  -> OUT/work/template/ (masters, the report notebook, nbgrader gradebook)
    one worker process per student (`--jobs N` at a time; `--shard i/N` for a cluster array),
        isolated (`autograder.grade.isolation`), writing only into OUT/incoming/<student>/
        -> moved to OUT/results/<student>.json, OUT/feedback/<student>/*.html and
           OUT/gradebooks/<student>.db + OUT/gradebooks/<student>/*.ipynb (private gradebook)
    autograder.review.gradebook -> OUT/gradebook.db (the class gradebook, for formgrader)
    autograder.grade.table -> OUT/grades.csv, summary table

Results are written atomically and carry a digest of the student's files: a run that was
interrupted, or run again on the same folder, regrades only students without a current result.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import asdict, dataclass
from pathlib import Path

from tqdm.auto import tqdm

from autograder.build.course import ASSIGNMENT, REPO_ROOT, generate_release_into
from autograder.build.notebook_source import NOTEBOOK_NAMES, build_masters
from autograder.grade.isolation import isolated_command, support
from autograder.grade.parallelism import default_jobs, threads_per_student
from autograder.grade.results import (FAILED, GradeOptions, NotebookResult, StudentResult,
                                      write_atomically)
from autograder.grade.staging import Submission, stage_submissions
from autograder.review.gradebook import PRIVATE_DIR, refresh_class_gradebook
from autograder.review.report_rubric import write_report_master

STUDENT_TIMEOUT_MARGIN = 600  # seconds on top of the per-cell limits before a worker is killed


@dataclass
class RunSummary:
    graded: list[str]
    skipped: list[str]
    failed: list[str]   # students whose grading itself failed (worker crashed or killed)
    network_isolated: bool  # student code ran without network
    files_protected: bool   # student code could not write outside its own folder (see isolation)


def submission_digest(folder: Path) -> str:
    """SHA-256 over the relative paths and bytes of every file in `folder`."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()


def prepare_template(dest: Path) -> Path:
    """A course folder with the masters and a gradebook that knows the assignment."""
    if dest.exists():
        shutil.rmtree(dest)
    build_masters(dest / "source" / ASSIGNMENT)
    write_report_master(dest / "source" / ASSIGNMENT)
    generate_release_into(dest)
    shutil.rmtree(dest / "release", ignore_errors=True)
    return dest


def _failed_result(student: str, digest: str, reason: str) -> StudentResult:
    notebooks = [NotebookResult(name, FAILED, failed={"_grading": reason}) for name in NOTEBOOK_NAMES]
    return StudentResult(student, notebooks, digest=digest)


def _student_timeout(options: GradeOptions) -> int:
    return len(NOTEBOOK_NAMES) * (options.training_timeout + 4 * options.cell_timeout) \
        + STUDENT_TIMEOUT_MARGIN


def _regular_file(path: Path) -> bool:
    return path.is_file() and not path.is_symlink()


def _remove_links(folder: Path) -> None:
    """Delete every symbolic link (and anything not a file or folder) below `folder`."""
    for parent, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = Path(parent) / name
            if path.is_symlink() or not (path.is_dir() or path.is_file()):
                path.unlink()


def _move_private_gradebook(own: Path, out: Path, student: str) -> None:
    """The worker's gradebook.db and autograded/ -> OUT/gradebooks/<student>.db and <student>/."""
    books = out / PRIVATE_DIR
    books.mkdir(parents=True, exist_ok=True)
    (books / f"{student}.db").unlink(missing_ok=True)
    shutil.rmtree(books / student, ignore_errors=True)
    if _regular_file(own / "gradebook.db") and (own / "autograded").is_dir():
        os.replace(own / "autograded", books / student)
        os.replace(own / "gradebook.db", books / f"{student}.db")


def grade_one(template: Path, submission: Submission, out: Path, options: GradeOptions,
              digest: str, env: dict[str, str] | None = None,
              protected: list[Path] = ()) -> bool:
    """Run the worker for one student; True when it produced a result.

    env: extra environment; protected: folders made read-only for the student's code (the
    worker's own folder `OUT/incoming/<student>` stays writable).
    """
    student = submission.student_id
    own = out / "incoming" / student
    shutil.rmtree(own, ignore_errors=True)
    own.mkdir(parents=True)
    command = [sys.executable, "-m", "autograder.grade.worker", "--template", str(template),
               "--staged", str(submission.folder), "--student", student,
               "--dest", str(own), "--digest", digest, "--options", json.dumps(asdict(options))]
    command = isolated_command(command, [REPO_ROOT, out, *protected], own, options.no_network)
    log_path = out / "logs" / f"{student}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w", encoding="utf-8") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True, cwd=own,
                                   env={**os.environ, **(env or {})})
        try:
            returncode = process.wait(timeout=_student_timeout(options))
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 9)
            process.wait()
            returncode = "killed after the time limit"
    result_path = out / "results" / f"{student}.json"
    result_path.parent.mkdir(parents=True, exist_ok=True)
    done = returncode == 0 and _regular_file(own / "result.json")
    if done:
        feedback = out / "feedback" / student
        shutil.rmtree(feedback, ignore_errors=True)
        _remove_links(own)  # student code could have planted links to other files there
        if (own / "feedback").is_dir():
            feedback.parent.mkdir(parents=True, exist_ok=True)
            os.replace(own / "feedback", feedback)
        _move_private_gradebook(own, out, student)
        os.replace(own / "result.json", result_path)  # last: the result marks the student done
    else:
        write_atomically(result_path, _failed_result(
            student, digest, f"worker exited with {returncode}; see {log_path}").to_json())
    shutil.rmtree(own, ignore_errors=True)
    return done


def _current_result(out: Path, student: str, digest: str) -> bool:
    path = out / "results" / f"{student}.json"
    if not path.is_file():
        return False
    try:
        result = StudentResult.from_json(path.read_text(encoding="utf-8"))
    except (ValueError, TypeError, KeyError):
        return False
    return result.digest == digest and all(nb.status != FAILED for nb in result.notebooks)


def parse_shard(text: str | None) -> tuple[int, int]:
    """'2/8' -> (2, 8): this run grades students number 2, 10, 18, ... (0-based)."""
    if not text:
        return 0, 1
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise ValueError(f"--shard must look like INDEX/COUNT (e.g. 0/4), got {text!r}") from None
    if not 0 <= index < count:
        raise ValueError(f"--shard {text}: INDEX must be between 0 and COUNT-1.")
    return index, count


def grade_submissions(source: Path, out: Path, jobs: int | None = 1,
                      options: GradeOptions | None = None, id_pattern: str | None = None,
                      shard: str | None = None, force: bool = False,
                      progress: bool = True) -> RunSummary:
    """Grade every student of `source` (a folder or an LMS zip) into `out`.

    jobs: students graded at a time (None: `default_jobs()`).
    """
    options = options or GradeOptions()
    jobs = default_jobs() if jobs is None else max(1, jobs)
    out = Path(out).resolve()
    submissions = stage_submissions(Path(source), out / "staging", id_pattern)
    index, count = parse_shard(shard)
    mine = [s for i, s in enumerate(submissions) if i % count == index]
    template = prepare_template(out / "work" / f"template-{index}")
    todo, skipped = [], []
    for submission in mine:
        digest = submission_digest(submission.folder)
        if not force and _current_result(out, submission.student_id, digest):
            skipped.append(submission.student_id)
        else:
            todo.append((submission, digest))
    graded, failed = [], []
    env = threads_per_student(jobs)
    with ThreadPoolExecutor(max_workers=jobs) as pool, \
            tqdm(total=len(todo), unit="student", desc=f"grading ({jobs} at a time)",
                 disable=not progress) as bar:
        futures = {pool.submit(grade_one, template, s, out, options, d, env, [Path(source)]): s
                   for s, d in todo}
        for future in futures:
            (graded if future.result() else failed).append(futures[future].student_id)
            bar.update(1)
    with suppress(OSError):
        (out / "incoming").rmdir()  # empty once every worker's files have been moved
    refresh_class_gradebook(out, template)
    available = support()
    return RunSummary(graded, skipped, failed, options.no_network and available.network,
                      available.files)
