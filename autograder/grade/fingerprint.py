"""What decides a grade on the grader's side, as digests: a result graded under other checks,
masters, solutions, helpers or options is stale, whatever the student's files.

`grader_fingerprint` maps each such file (by its path relative to the repository) and the
grading options ("options") to a SHA-256; each result stores the fingerprint it was graded
under, and `changed_parts` says which parts differ between two fingerprints.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path

from autograder.build.course import REPO_ROOT
from autograder.grade.results import GradeOptions

GRADING_SOURCES = ("autograder/masters/*.md", "autograder/checks/*.py", "autograder/solutions.py",
                   "helpers/**/*.py")
OPTIONS_KEY = "options"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def grader_fingerprint(options: GradeOptions, root: Path = REPO_ROOT) -> dict[str, str]:
    """{relative path or 'options': SHA-256} of everything on the grader's side that decides a
    grade: the masters, the hidden checks, the solutions, the helpers' source, the options."""
    root = Path(root)
    files = sorted({path for pattern in GRADING_SOURCES for path in root.glob(pattern)
                    if path.is_file() and "__pycache__" not in path.parts})
    if not files:
        raise FileNotFoundError(f"{root} holds none of {', '.join(GRADING_SOURCES)}: not the "
                                "grader's repository")
    fingerprint = {path.relative_to(root).as_posix(): _sha256(path.read_bytes()) for path in files}
    options_json = json.dumps(asdict(options), sort_keys=True).encode()
    return {**fingerprint, OPTIONS_KEY: _sha256(options_json)}


def changed_parts(old: dict[str, str], new: dict[str, str]) -> list[str]:
    """The parts (paths without 'autograder/', or 'options') added, removed or changed, sorted;
    an empty `old` (a result from before fingerprints were stored) is 'unknown grader'."""
    if not old:
        return ["unknown grader"]
    names = {name for name in old.keys() | new.keys() if old.get(name) != new.get(name)}
    return sorted(name.removeprefix("autograder/") for name in names)
