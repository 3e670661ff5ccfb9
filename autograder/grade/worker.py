"""`python -m autograder.grade.worker`: grade one student in this process (started by the runner).

It is a separate process so that one student's crash, memory use or tampering stays there.
It writes only into its own folder (`--dest`: result.json, feedback/, gradebook.db and
autograded/ (its private gradebook and graded notebooks), its scratch copy of the course); the
runner then moves them into the grading folder.

The runner starts it ahead of its turn (`runner.grade_in_lanes`): with `--wait` it warms up
first (`warm_up`: its fork server imports torch and builds the models), then waits for a line
`go` on its standard input before it reads the template or the student's files (at the end of
its input instead, it exits with WAIT_ENDED and no result); with `--notify-fd` it says when its
notebooks have run (no kernel runs after that), so that the runner starts the next worker then.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path

from autograder.grade.results import GradeOptions, write_atomically
from autograder.grade.student import grade_student, keep_graded_files, warm_up

WAIT_ENDED = 3  # exit status of a worker whose input ended before `go`


def apply_limits(options: GradeOptions) -> None:
    """Memory and CPU-time limits on this process, inherited by every kernel it starts."""
    if options.memory_gb:
        limit = int(options.memory_gb * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    if options.cpu_seconds:
        resource.setrlimit(resource.RLIMIT_CPU, (options.cpu_seconds, options.cpu_seconds))


def _notifier(fd: int | None) -> Callable[[], None]:
    """Writes one byte to `fd` and closes it, once (nothing if fd is None)."""
    if fd is None:
        return lambda: None
    os.set_inheritable(fd, False)  # not for the fork server and the kernels

    def notify() -> None:
        with suppress(OSError):  # the runner stopped listening: nothing to say
            os.write(fd, b".")
            os.close(fd)
    return notify


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m autograder.grade.worker")
    parser.add_argument("--template", type=Path, required=True)
    parser.add_argument("--staged", type=Path, required=True)
    parser.add_argument("--student", required=True)
    parser.add_argument("--dest", type=Path, required=True,
                        help="this student's own folder: result.json, feedback/, scratch")
    parser.add_argument("--digest", required=True)
    parser.add_argument("--options", default="{}", help="GradeOptions as JSON")
    parser.add_argument("--wait", action="store_true",
                        help="warm up, then grade once a line 'go' comes on standard input")
    parser.add_argument("--notify-fd", type=int, default=None,
                        help="a file descriptor to write one byte to once the notebooks have "
                             "run (the runner then starts its next worker)")
    args = parser.parse_args(argv)
    options = GradeOptions(**json.loads(args.options))
    nearly_done = _notifier(args.notify_fd)
    apply_limits(options)
    # the kernels' sockets need a short path (Unix socket names: at most 107 characters)
    with tempfile.TemporaryDirectory(prefix="scratch-", dir=args.dest) as tmp, \
            tempfile.TemporaryDirectory(prefix="lora-kernels-") as sockets:
        if args.wait:
            warm_up(Path(tmp))
            if sys.stdin.readline().strip() != "go":
                return WAIT_ENDED
        result = grade_student(args.template, args.staged, args.student, Path(tmp),
                               args.dest / "feedback", options, sockets_dir=Path(sockets),
                               nearly_done=nearly_done)
        keep_graded_files(Path(tmp), args.student, args.dest)
    result.digest = args.digest
    write_atomically(args.dest / "result.json", result.to_json())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
