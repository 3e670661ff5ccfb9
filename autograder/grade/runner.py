"""Grading a whole class: stage, grade every student in its own process, merge, summarise.

    stage_submissions -> OUT/staging/<student>/
    prepare_template  -> OUT/work/template/ (masters, the report notebook, nbgrader gradebook),
        built while the first workers warm up
    one worker process per student (`--jobs N` lanes of one student at a time; `--shard i/N`
        for a cluster array), started while the lane's student before it finishes (it warms up
        meanwhile and waits for its turn: `grade_in_lanes`), sandboxed
        (`autograder.grade.isolation`): it sees of the run only its own staged files and the
        template, and writes only into OUT/incoming/<student>/
        -> moved to OUT/results/<student>.json, OUT/feedback/<student>/*.html and
           OUT/gradebooks/<student>.db + OUT/gradebooks/<student>/*.ipynb (private gradebook)
    autograder.review.gradebook -> OUT/gradebook.db (the class gradebook, for formgrader)
    autograder.grade.table -> OUT/grades.csv, summary table; OUT/grading_info.json says which
        protections were in force

Results are written atomically and carry a digest of the student's files and the grader's
fingerprint (`autograder.grade.fingerprint`: masters, checks, solutions, helpers, options): a run
that was interrupted, or run again on the same folder, regrades only students without a current
result, and every student once the grader changed.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import select
import shutil
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TypeVar

from tqdm.auto import tqdm

from autograder.build.course import ASSIGNMENT, REPO_ROOT, generate_release_into
from autograder.build.notebook_source import NOTEBOOK_NAMES, build_masters
from autograder.grade.fingerprint import changed_parts, grader_fingerprint
from autograder.grade.isolation import Protections, best_sandbox, protections, sandboxed_command
from autograder.grade.parallelism import default_jobs, threads_per_student
from autograder.grade.results import (FAILED, GradeOptions, NotebookResult, StudentResult,
                                      write_atomically)
from autograder.grade.staging import Submission, stage_submissions
from autograder.review.gradebook import PRIVATE_DIR, refresh_class_gradebook
from autograder.review.report_rubric import write_report_master

STUDENT_TIMEOUT_MARGIN = 600  # seconds on top of the per-cell limits before a worker is killed
GRADING_INFO = "grading_info.json"  # next to grades.csv: the protections student code ran under
ROSTER = "roster.json"  # in a grading folder: every student of the class, and this shard's
T = TypeVar("T")


@dataclass
class RunSummary:
    graded: list[str]
    skipped: list[str]
    failed: list[str]   # students whose grading itself failed (worker crashed or killed)
    protections: Protections  # what the sandbox enforced on student code
    grader_changes: list[str] = field(default_factory=list)  # why unchanged students were regraded


def submission_digest(folder: Path) -> str:
    """SHA-256 over the relative paths and bytes of every file in `folder`."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()


def prepare_template(dest: Path) -> Path:
    """A course folder with the masters and a gradebook that knows the assignment, built in
    the folder `dest` (emptied first)."""
    empty_folder(dest)
    build_masters(dest / "source" / ASSIGNMENT)
    write_report_master(dest / "source" / ASSIGNMENT)
    generate_release_into(dest)
    shutil.rmtree(dest / "release", ignore_errors=True)
    return dest


def empty_folder(path: Path) -> Path:
    """`path`, an empty folder: what was in it is deleted, the folder itself is kept (a sandbox
    that shows it shows what is written there later)."""
    path.mkdir(parents=True, exist_ok=True)
    for child in path.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()
    return path


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


@dataclass
class StartedWorker:
    """A student's worker process, started with `--wait`: it warms up (imports, the models of
    grading mode) and reads nothing of the student until `go`."""

    submission: Submission
    digest: str
    process: subprocess.Popen
    log_path: Path
    notices: int  # read end of the pipe on which it says that its notebooks have run
    timeout: float  # seconds it may take once told to go
    deadline: float = math.inf  # time.monotonic() when they are up (set by `go`)

    def go(self) -> None:
        """Let it grade; its time limit starts now."""
        self.deadline = time.monotonic() + self.timeout
        with suppress(BrokenPipeError):  # it died warming up: finish_worker says so
            self.process.stdin.write(b"go\n")
            self.process.stdin.close()

    def seconds_left(self) -> float:
        return max(0.0, self.deadline - time.monotonic())

    def wait_nearly_done(self) -> None:
        """Until it has run its notebooks (or it ends, or its time is up)."""
        if self.notices >= 0:
            select.select([self.notices], [], [], self.seconds_left())
            os.close(self.notices)
            self.notices = -1

    def abort(self) -> None:
        """End it without grading: it exits at the end of its input."""
        with suppress(BrokenPipeError):
            self.process.stdin.close()
        _wait_or_kill(self.process, 60)


def _wait_or_kill(process: subprocess.Popen, seconds: float) -> int | None:
    """Its exit status, or None when it was killed (its whole session) after `seconds`."""
    try:
        return process.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, 9)
        process.wait()
        return None


def start_worker(template: Path, submission: Submission, out: Path, options: GradeOptions,
                 digest: str, env: dict[str, str] | None = None,
                 protected: list[Path] = (), sandbox: str | None = None) -> StartedWorker:
    """Start the worker for one student in `sandbox` (default: the best this machine has).

    env: extra environment; protected: folders out of the student's reach besides `out` (the
    submissions). The worker reads its own staged files and the template (which need not be
    built yet: only the folder must exist) and writes only into its own folder
    `OUT/incoming/<student>`.
    """
    student = submission.student_id
    own = out / "incoming" / student
    shutil.rmtree(own, ignore_errors=True)
    own.mkdir(parents=True)
    command = [sys.executable, "-m", "autograder.grade.worker", "--template", str(template),
               "--staged", str(submission.folder), "--student", student,
               "--dest", str(own), "--digest", digest, "--options", json.dumps(asdict(options))]
    notices, notify = os.pipe()
    command += ["--wait", "--notify-fd", str(notify)]
    command = sandboxed_command(command, sandbox or best_sandbox(),
                                readable=[submission.folder, template], writable=own,
                                protected=[out, *protected], no_network=options.no_network)
    log_path = out / "logs" / f"{student}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w", encoding="utf-8") as log:
        try:
            process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=log,
                                       stderr=subprocess.STDOUT, start_new_session=True, cwd=own,
                                       env={**os.environ, **(env or {})}, pass_fds=(notify,))
        finally:
            os.close(notify)
    return StartedWorker(submission, digest, process, log_path, notices,
                         _student_timeout(options))


def finish_worker(started: StartedWorker, out: Path) -> bool:
    """Wait for a worker told to go (killed once the student's time limit, counted from `go`,
    is up) and move its files into the grading folder; True when it produced a result."""
    student, process = started.submission.student_id, started.process
    own = out / "incoming" / student
    started.wait_nearly_done()
    returncode = _wait_or_kill(process, started.seconds_left())
    if returncode is None:
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
            student, started.digest,
            f"worker exited with {returncode}; see {started.log_path}").to_json())
    shutil.rmtree(own, ignore_errors=True)
    return done


def grade_in_lanes(todo: list[T], lanes: int, start: Callable[[T], StartedWorker],
                   ready: Callable[[], object], finish: Callable[[StartedWorker], None]) -> None:
    """Grade `todo` in `lanes` lanes, each one student at a time, in order.

    A lane starts the worker of its next student when the one grading has run its notebooks,
    so that the next one warms up (its fork server imports torch and builds the models, a few
    seconds) on the cores the scores, report and feedback HTML leave idle (earlier, it would
    slow the kernels down as much as it gains). `ready()` is called before each go (it raises
    if the template could not be built: the lane then ends its workers and raises).
    """
    queue, lock = deque(todo), threading.Lock()

    def take() -> StartedWorker | None:
        with lock:
            item = queue.popleft() if queue else None
        return None if item is None else start(item)

    def lane() -> None:
        started = take()
        while started is not None:
            try:
                ready()
            except BaseException:
                started.abort()
                raise
            started.go()
            started.wait_nearly_done()
            current, started = started, take()
            try:
                finish(current)
            except BaseException:
                if started is not None:
                    started.abort()
                raise

    lanes = max(1, min(lanes, len(todo)))
    with ThreadPoolExecutor(max_workers=lanes) as pool:
        for future in [pool.submit(lane) for _ in range(lanes)]:
            future.result()


def _previous_result(out: Path, student: str) -> StudentResult | None:
    path = out / "results" / f"{student}.json"
    if not path.is_file():
        return None
    try:
        return StudentResult.from_json(path.read_text(encoding="utf-8"))
    except (ValueError, TypeError, KeyError):
        return None


def _stale_grader(out: Path, student: str, digest: str, grader: dict[str, str]) -> list[str] | None:
    """None when `student` needs grading anyway (no usable result, other files, a failure);
    else the grader's parts that changed since that result (empty: it is current)."""
    result = _previous_result(out, student)
    if result is None or result.digest != digest or any(nb.status == FAILED
                                                         for nb in result.notebooks):
        return None
    return changed_parts(result.grader, grader)


def _stamp(out: Path, student: str, grader: dict[str, str]) -> None:
    """Record in `student`'s new result the grader fingerprint it was graded under."""
    path = out / "results" / f"{student}.json"
    result = StudentResult.from_json(path.read_text(encoding="utf-8"))
    result.grader = grader
    write_atomically(path, result.to_json())


def write_roster(out: Path, students: list[str], mine: list[str]) -> None:
    """Record the class's students and those this run (shard) grades, for `merge` to check."""
    write_atomically(out / ROSTER, json.dumps({"students": students, "shard": mine}, indent=1))


def roster_students(folder: Path) -> set[str] | None:
    """The class's students according to `folder`'s roster (None: no roster there)."""
    path = Path(folder) / ROSTER
    if not path.is_file():
        return None
    return set(json.loads(path.read_text(encoding="utf-8"))["students"])


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
                      progress: bool = True, grader_root: Path = REPO_ROOT,
                      sandbox: str | None = None) -> RunSummary:
    """Grade every student of `source` (a folder or an LMS zip) into `out`.

    jobs: students graded at a time (None: `default_jobs()`). grader_root: the repository
    whose masters, checks, solutions and helpers the fingerprint covers. sandbox: one of
    `isolation.SANDBOXES` (None: the best this machine has).
    """
    options = options or GradeOptions()
    grader = grader_fingerprint(options, grader_root)
    sandbox = sandbox or best_sandbox()
    jobs = default_jobs() if jobs is None else max(1, jobs)
    out = Path(out).resolve()
    submissions = stage_submissions(Path(source), out / "staging", id_pattern)
    index, count = parse_shard(shard)
    mine = [s for i, s in enumerate(submissions) if i % count == index]
    write_roster(out, [s.student_id for s in submissions], [s.student_id for s in mine])
    todo, skipped, grader_changes = [], [], set()
    for submission in mine:
        digest = submission_digest(submission.folder)
        changes = None if force else _stale_grader(out, submission.student_id, digest, grader)
        if changes == []:
            skipped.append(submission.student_id)
        else:
            todo.append((submission, digest))
            grader_changes.update(changes or ())
    template = out / "work" / f"template-{index}"
    done: dict[str, bool] = {}
    if todo:
        env, protected = threads_per_student(jobs), [Path(source).resolve()]
        empty_folder(template)  # the workers' sandboxes show it: built while they warm up
        with ThreadPoolExecutor(max_workers=1) as builder, \
                tqdm(total=len(todo), unit="student", desc=f"grading ({jobs} at a time)",
                     disable=not progress) as bar:
            built, lock = builder.submit(prepare_template, template), threading.Lock()

            def finish(started: StartedWorker) -> None:
                student = started.submission.student_id
                done[student] = finish_worker(started, out)
                if done[student]:
                    _stamp(out, student, grader)
                with lock:  # lanes finish in threads of their own
                    bar.update(1)

            grade_in_lanes(todo, jobs, lambda item: start_worker(
                template, item[0], out, options, item[1], env, protected, sandbox),
                built.result, finish)
    order = [s.student_id for s, _ in todo]
    graded = [student for student in order if done[student]]
    failed = [student for student in order if not done[student]]
    with suppress(OSError):
        (out / "incoming").rmdir()  # empty once every worker's files have been moved
    if todo:  # something was graded: the class gradebook takes it in
        refresh_class_gradebook(out, template)
    enforced = protections(sandbox, options.no_network)
    write_atomically(out / GRADING_INFO, json.dumps(asdict(enforced), indent=1))
    return RunSummary(graded, skipped, failed, enforced, sorted(grader_changes))
