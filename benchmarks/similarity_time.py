"""Seconds to compare a class of synthetic submissions with `python -m autograder similarity`.

    python -m benchmarks.similarity_time [--students 200] [--seed 0]

Each synthetic student takes, for every exercise, one of the test class's six distinct
implementations (`tests/similarity_class.py`) with its local variables randomly renamed, its
functions reordered and its code reformatted, and written answers and report sections made of
three sentences drawn from the six students' answers to that question. Times staging, scoring
every pair (the reference solution included) and writing similarity.csv and similarity.html,
as the command does; writing the submissions is not timed. Prints wall-clock and CPU seconds.
Not a test: run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import platform
import random
import re
import tempfile
import time
from pathlib import Path

from autograder.review.similarity import similarity_from_submissions
from tests.similarity_class import (ANSWERS, IMPLEMENTATIONS, disguise, fill_notebooks,
                                    report_text, student_sections, write_student)


def _sentences(text: str) -> list[str]:
    return [s for s in re.split(r"(?<=[.;:])\s+", text) if s]


def synthetic_student(rng: random.Random, index: int) -> tuple[dict, dict]:
    """(exercise cells, answers and report sections) of one synthetic student."""
    code = {grade_id: disguise(rng.choice(options), seed=rng.randrange(10**6))
            for grade_id, options in IMPLEMENTATIONS.items()}
    sections = student_sections(index % len(ANSWERS), f"student{index:03d}")
    for key in ANSWERS[0]:
        pool = [s for answers in ANSWERS for s in _sentences(answers[key])]
        sections[key] = " ".join(rng.sample(pool, 3))
    return code, sections


def write_class(root: Path, students: int, seed: int) -> Path:
    rng = random.Random(seed)
    for index in range(students):
        code, sections = synthetic_student(rng, index)
        write_student(root / f"student{index:03d}", fill_notebooks(code, sections),
                      report_text(sections))
    return root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="lora-similarity-bench-") as tmp:
        submissions = write_class(Path(tmp) / "submissions", args.students, args.seed)
        start, cpu_start = time.perf_counter(), time.process_time()
        result = similarity_from_submissions(submissions, Path(tmp) / "out")
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    print(f"{platform.processor() or platform.machine()}, Python {platform.python_version()}")
    print(f"{args.students} students + the reference: {len(result.pairs)} pairs, "
          f"{len(result.flagged)} flagged, median overall {result.medians['overall']:.3f}, "
          f"robust SD {result.spreads['overall']:.3f}")
    print(f"similarity (staging, scoring, CSV and HTML): {seconds:.1f} s wall clock, "
          f"{cpu:.1f} s CPU (one process; the difference is other load on the machine)")


if __name__ == "__main__":
    main()
