"""Feedback after manual grading: nbgrader generate_feedback on the class gradebook.

The feedback the grading run wrote (`OUT/feedback/<id>/NN_*.html`, `rapport.html`) has the
autograded scores only. `class_feedback` regenerates it from OUT/gradebook.db, so each page also
carries the points and comments the instructor entered in formgrader; `rapport.html` becomes the
graded report (the report check's findings, the report, its points and comment).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from traitlets.config import Config

from autograder.build.course import ASSIGNMENT, NbgraderError, nbgrader_api


def class_feedback(out: Path) -> list[str]:
    """Regenerate OUT/feedback/<id>/*.html from the class gradebook; the students done."""
    out = Path(out)
    if not (out / "gradebook.db").is_file():
        raise FileNotFoundError(f"No class gradebook {out / 'gradebook.db'}: run `python -m "
                                "autograder grade` first.")
    config = Config()
    config.CourseDirectory.notebook_id = "*"
    outcome = nbgrader_api(out, config).generate_feedback(ASSIGNMENT, force=True)
    if not outcome.get("success"):
        raise NbgraderError(f"nbgrader generate_feedback failed:\n{outcome.get('log')}")
    students = []
    for generated in sorted((out / "feedback").glob(f"*/{ASSIGNMENT}")):
        student_dir = generated.parent
        for page in generated.glob("*.html"):
            page.replace(student_dir / page.name)
        shutil.rmtree(generated)
        students.append(student_dir.name)
    return students
