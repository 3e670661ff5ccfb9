"""`python -m autograder.worker`: grade one student in this process (started by the runner).

It is a separate process so that one student's crash, memory use or tampering stays there.
The result is written atomically to `OUT/results/<student>.json`.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from autograder.grading import GradeOptions, grade_student, write_atomically


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m autograder.worker")
    parser.add_argument("--template", type=Path, required=True)
    parser.add_argument("--staged", type=Path, required=True)
    parser.add_argument("--student", required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--digest", required=True)
    parser.add_argument("--options", default="{}", help="GradeOptions as JSON")
    args = parser.parse_args(argv)
    options = GradeOptions(**json.loads(args.options))
    with tempfile.TemporaryDirectory(prefix=f"grade-{args.student}-") as tmp:
        result = grade_student(args.template, args.staged, args.student, Path(tmp),
                               args.out / "feedback" / args.student, options)
    result.digest = args.digest
    write_atomically(args.out / "results" / f"{args.student}.json", result.to_json())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
