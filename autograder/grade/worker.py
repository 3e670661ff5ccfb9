"""`python -m autograder.grade.worker`: grade one student in this process (started by the runner).

It is a separate process so that one student's crash, memory use or tampering stays there.
It writes only into its own folder (`--dest`: result.json, feedback/, gradebook.db and
autograded/ (its private gradebook and graded notebooks), its scratch copy of the course); the
runner then moves them into the grading folder.
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
from pathlib import Path

from autograder.grade.results import GradeOptions, write_atomically
from autograder.grade.student import grade_student, keep_graded_files


def apply_limits(options: GradeOptions) -> None:
    """Memory and CPU-time limits on this process, inherited by every kernel it starts."""
    if options.memory_gb:
        limit = int(options.memory_gb * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    if options.cpu_seconds:
        resource.setrlimit(resource.RLIMIT_CPU, (options.cpu_seconds, options.cpu_seconds))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m autograder.grade.worker")
    parser.add_argument("--template", type=Path, required=True)
    parser.add_argument("--staged", type=Path, required=True)
    parser.add_argument("--student", required=True)
    parser.add_argument("--dest", type=Path, required=True,
                        help="this student's own folder: result.json, feedback/, scratch")
    parser.add_argument("--digest", required=True)
    parser.add_argument("--options", default="{}", help="GradeOptions as JSON")
    args = parser.parse_args(argv)
    options = GradeOptions(**json.loads(args.options))
    apply_limits(options)
    # the kernels' sockets need a short path (Unix socket names: at most 107 characters)
    with tempfile.TemporaryDirectory(prefix="scratch-", dir=args.dest) as tmp, \
            tempfile.TemporaryDirectory(prefix="lora-kernels-") as sockets:
        result = grade_student(args.template, args.staged, args.student, Path(tmp),
                               args.dest / "feedback", options, sockets_dir=Path(sockets))
        keep_graded_files(Path(tmp), args.student, args.dest)
    result.digest = args.digest
    write_atomically(args.dest / "result.json", result.to_json())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
