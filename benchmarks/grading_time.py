"""Seconds per submission of the autograder, serial and with --jobs, in grading mode.

    python -m benchmarks.grading_time [--copies 2] [--jobs 2] [--sandboxes bubblewrap namespaces]

Grades COPIES copies of the complete example submission twice, first with --jobs 1, then with
--jobs JOBS, and prints seconds per submission (wall clock of the whole run divided by the
number of students, staging and template included) and the speed-up. With several
`--sandboxes` (`autograder.grade.isolation`), each run is made in each sandbox in turn, side by
side, and the slowdown against the first is printed. Not a test: run it on an otherwise idle
machine.
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
from autograder.grade.isolation import SANDBOXES, best_sandbox, sandbox_works
from autograder.grade.runner import grade_submissions
from autograder.grade.table import load_results


def _timed_run(submissions: Path, out: Path, jobs: int, sandbox: str) -> float:
    start = time.perf_counter()
    summary = grade_submissions(submissions, out, jobs=jobs, force=True, progress=False,
                                sandbox=sandbox)
    seconds = time.perf_counter() - start
    scores = {r.student_id: r.score for r in load_results(out)}
    if summary.failed or len(set(scores.values())) != 1:
        raise SystemExit(f"unexpected grading result: {summary}, scores {scores}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=2, help="complete submissions to grade")
    parser.add_argument("--jobs", type=int, default=2, help="parallel students in the 2nd run")
    parser.add_argument("--sandboxes", nargs="+", choices=SANDBOXES, default=[best_sandbox()],
                        help="sandboxes to measure side by side (default: the best one here)")
    args = parser.parse_args()
    missing = [s for s in args.sandboxes if not sandbox_works(s)]
    if missing:
        raise SystemExit(f"not available on this machine: {', '.join(missing)}")
    seconds: dict[tuple[str, int], float] = {}
    with tempfile.TemporaryDirectory(prefix="grading-time-") as tmp:
        root = Path(tmp)
        first = write_submission(complete_solution(), root / "submissions" / "student-0")
        for i in range(1, args.copies):
            shutil.copytree(first, root / "submissions" / f"student-{i}")
        for jobs in sorted({1, args.jobs}):
            for sandbox in args.sandboxes:  # interleaved, so that a change of load hits both
                seconds[sandbox, jobs] = _timed_run(root / "submissions",
                                                    root / f"{sandbox}-{jobs}", jobs, sandbox)
                print(f"{sandbox}, --jobs {jobs}: {seconds[sandbox, jobs]:.0f} s", flush=True)
    print(f"{platform.machine()}, {torch.get_num_threads()} torch threads, "
          f"{args.copies} complete submissions, grading mode")
    print("| sandbox | run | seconds | seconds per submission |")
    print("| --- | --- | ---: | ---: |")
    for (sandbox, jobs), value in seconds.items():
        print(f"| {sandbox} | --jobs {jobs} | {value:.0f} | {value / args.copies:.0f} |")
    for sandbox in args.sandboxes if args.jobs > 1 else []:
        print(f"{sandbox}: speed-up of --jobs {args.jobs}: "
              f"{seconds[sandbox, 1] / seconds[sandbox, args.jobs]:.2f}x")
    base = args.sandboxes[0]
    for sandbox in args.sandboxes[1:]:
        for jobs in sorted({1, args.jobs}):
            change = seconds[sandbox, jobs] / seconds[base, jobs] - 1
            print(f"{sandbox} against {base}, --jobs {jobs}: {change:+.1%}")


if __name__ == "__main__":
    main()
