"""Seconds per submission of the autograder, serial and with --jobs, against the kernels' floor.

    python -m benchmarks.grading_time [--copies 2] [--jobs 2]

Grades COPIES copies of the complete example submission twice, first with --jobs 1, then with
--jobs JOBS, and prints seconds per submission (wall clock of the whole run divided by the
number of students, staging and template included). Beside each run, in the same process and
just before it, it measures the floor of a design with one fresh kernel per notebook: seven
kernels per submission, each started and importing torch and the helpers, nothing else (JOBS
such chains at a time for the parallel run), and prints the ratio of grading to that floor.
Not a test: run it on an otherwise idle machine; the load average is printed with the result.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
from jupyter_client.manager import start_new_kernel

from autograder.build.notebook_source import NOTEBOOK_NAMES
from autograder.demo.examples import complete_solution, write_submission
from autograder.grade.isolation import SANDBOXES, best_sandbox, sandbox_works
from autograder.grade.parallelism import threads_per_student
from autograder.grade.runner import grade_submissions
from autograder.grade.table import load_results

FLOOR_CODE = "import torch, helpers"


def _fresh_kernels(count: int, env: dict[str, str]) -> None:
    """Start `count` kernels one after the other; each imports torch and the helpers, then stops."""
    for _ in range(count):
        manager, client = start_new_kernel(kernel_name="python3", env={**os.environ, **env})
        try:
            reply = client.execute_interactive(FLOOR_CODE, timeout=600, output_hook=lambda _: None)
            if reply["content"]["status"] != "ok":
                raise SystemExit(f"the floor's kernel could not run {FLOOR_CODE!r}: {reply}")
        finally:
            client.stop_channels()
            manager.shutdown_kernel(now=True)


def floor_seconds(copies: int, jobs: int) -> float:
    """Wall clock of COPIES x 6 fresh kernels importing torch and helpers, JOBS chains at a time
    (each chain's kernels get the threads a parallel student's kernels get)."""
    env = threads_per_student(jobs)
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        for future in [pool.submit(_fresh_kernels, len(NOTEBOOK_NAMES), env)
                       for _ in range(copies)]:
            future.result()
    return time.perf_counter() - start


def grading_seconds(submissions: Path, out: Path, jobs: int, sandbox: str) -> float:
    """Wall clock of grading every submission in `sandbox`; every one must get full marks."""
    start = time.perf_counter()
    summary = grade_submissions(submissions, out, jobs=jobs, force=True, progress=False,
                                sandbox=sandbox)
    seconds = time.perf_counter() - start
    results = load_results(out)
    wrong = {r.student_id: r.score + r.bonus for r in results  # the bonus notebook included
             if r.score + r.bonus != sum(nb.max_score for nb in r.notebooks)}
    if summary.failed or wrong or len(results) != len(list(submissions.iterdir())):
        raise SystemExit(f"unexpected grading result: {summary}, not full marks: {wrong}")
    return seconds


def _cpu() -> str:
    with open("/proc/cpuinfo", encoding="utf-8") as info:
        names = [line.split(":", 1)[1].strip() for line in info if line.startswith("model name")]
    return f"{names[0] if names else platform.processor()}, {os.cpu_count()} cores"


def _load() -> str:
    return " ".join(f"{value:.1f}" for value in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=2, help="complete submissions to grade")
    parser.add_argument("--jobs", type=int, default=2, help="parallel students in the 2nd run")
    parser.add_argument("--sandboxes", nargs="+", choices=SANDBOXES, default=[best_sandbox()],
                        help="sandboxes to grade in, side by side (default: the best one here)")
    args = parser.parse_args()
    missing = [s for s in args.sandboxes if not sandbox_works(s)]
    if missing:
        raise SystemExit(f"not available on this machine: {', '.join(missing)}")
    loads = [_load()]
    rows = []
    with tempfile.TemporaryDirectory(prefix="grading-time-") as tmp:
        root = Path(tmp)
        first = write_submission(complete_solution(), root / "submissions" / "student-0")
        for i in range(1, args.copies):
            shutil.copytree(first, root / "submissions" / f"student-{i}")
        for jobs in (1, args.jobs):
            floor = floor_seconds(args.copies, jobs)
            for sandbox in args.sandboxes:  # interleaved, so that a change of load hits all
                grading = grading_seconds(root / "submissions", root / f"{sandbox}-{jobs}",
                                          jobs, sandbox)
                rows.append((jobs, sandbox, grading, floor))
                loads.append(_load())
    print(f"{datetime.date.today()}, {_cpu()}, {platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} torch threads, {args.copies} complete submissions, "
          f"grading mode; load average (1, 5, 15 min) before and after each run: "
          f"{' | '.join(loads)}")
    print("| run | sandbox | seconds per submission | floor: fresh kernels importing torch, "
          "helpers | grading / floor |")
    print("| --- | --- | ---: | ---: | ---: |")
    for jobs, sandbox, grading, floor in rows:
        print(f"| --jobs {jobs} | {sandbox} | {grading / args.copies:.1f} | "
              f"{floor / args.copies:.1f} | {grading / floor:.2f}x |")
    for sandbox in args.sandboxes:
        times = [grading for _, used, grading, _ in rows if used == sandbox]
        print(f"{sandbox}: speed-up of --jobs {args.jobs}: {times[0] / times[-1]:.2f}x")


if __name__ == "__main__":
    main()
