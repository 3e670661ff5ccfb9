"""Seconds per submission of the autograder, serial and with --jobs, in grading mode.

    python -m benchmarks.grading_time [--copies 2] [--jobs 2]

Grades COPIES copies of the complete example submission twice, first with --jobs 1, then with
--jobs JOBS, and prints seconds per submission (wall clock of the whole run divided by the
number of students, staging and template included) and the speed-up. Not a test: run it on an
otherwise idle machine.
"""

from __future__ import annotations

import argparse
import platform
import shutil
import tempfile
import time
from pathlib import Path

import torch

from autograder.demo.examples import complete_solution, write_submission
from autograder.grade.runner import grade_submissions
from autograder.grade.table import load_results


def _timed_run(submissions: Path, out: Path, jobs: int) -> float:
    start = time.perf_counter()
    summary = grade_submissions(submissions, out, jobs=jobs, force=True, progress=False)
    seconds = time.perf_counter() - start
    scores = {r.student_id: r.score for r in load_results(out)}
    if summary.failed or len(set(scores.values())) != 1:
        raise SystemExit(f"unexpected grading result: {summary}, scores {scores}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=2, help="complete submissions to grade")
    parser.add_argument("--jobs", type=int, default=2, help="parallel students in the 2nd run")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="grading-time-") as tmp:
        root = Path(tmp)
        first = write_submission(complete_solution(), root / "submissions" / "student-0")
        for i in range(1, args.copies):
            shutil.copytree(first, root / "submissions" / f"student-{i}")
        serial = _timed_run(root / "submissions", root / "serial", jobs=1)
        parallel = _timed_run(root / "submissions", root / "parallel", jobs=args.jobs)
    print(f"{platform.machine()}, {torch.get_num_threads()} torch threads, "
          f"{args.copies} complete submissions, grading mode")
    print("| run | seconds | seconds per submission |")
    print("| --- | ---: | ---: |")
    print(f"| --jobs 1 | {serial:.0f} | {serial / args.copies:.0f} |")
    print(f"| --jobs {args.jobs} | {parallel:.0f} | {parallel / args.copies:.0f} |")
    print(f"speed-up of --jobs {args.jobs}: {serial / parallel:.2f}x")


if __name__ == "__main__":
    main()
