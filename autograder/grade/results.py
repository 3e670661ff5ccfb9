"""What grading produces: statuses, grading options, per-notebook and per-student results
(JSON), and the atomic write every result and table goes through."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from helpers.paths import BONUS_NOTEBOOKS

# Statuses of a notebook, from best to worst.
GRADED = "graded"
TIMED_OUT = "timed out"
KERNEL_DIED = "kernel died"
MISSING = "notebook missing"
UNREADABLE = "notebook unreadable"
FAILED = "grading failed"
TRAINING_TAG = "training"


@dataclass
class GradeOptions:
    """Limits applied to each student's kernels."""

    cell_timeout: int = 120        # seconds per cell
    training_timeout: int = 900    # seconds for cells tagged `training`
    memory_gb: float = 16.0        # address-space limit of every kernel (0: none)
    cpu_seconds: int = 3600        # CPU-time limit of every kernel (0: none)
    max_output_lines: int = 200    # lines kept per cell output in the graded copy
    max_output_chars: int = 1_000_000  # characters kept per output (a plot is ~100,000)
    max_cell_output_chars: int = 10_000_000  # characters recorded per cell while it runs
    no_network: bool = True        # run kernels without network where the OS allows it


@dataclass
class NotebookResult:
    name: str
    status: str
    score: float = 0.0
    max_score: float = 0.0
    tests: dict[str, float] = field(default_factory=dict)      # grade_id -> points obtained
    max_tests: dict[str, float] = field(default_factory=dict)  # grade_id -> points possible
    failed: dict[str, str] = field(default_factory=dict)       # grade_id -> error summary
    manual: dict[str, float] = field(default_factory=dict)     # written answers: max points, graded by hand
    seconds: float = 0.0


@dataclass
class StudentResult:
    student_id: str
    notebooks: list[NotebookResult]
    seconds: float = 0.0
    digest: str = ""  # of the staged files: a resumed run regrades only what changed
    grader: dict[str, str] = field(default_factory=dict)  # fingerprint it was graded under
    report: dict = field(default_factory=dict)

    @property
    def score(self) -> float:
        """Points of the lab's required notebooks (the bonus is counted apart)."""
        return sum(nb.score for nb in self.notebooks if nb.name not in BONUS_NOTEBOOKS)

    @property
    def bonus(self) -> float:
        return sum(nb.score for nb in self.notebooks if nb.name in BONUS_NOTEBOOKS)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    @classmethod
    def from_json(cls, text: str) -> "StudentResult":
        data = json.loads(text)
        data["notebooks"] = [NotebookResult(**nb) for nb in data["notebooks"]]
        return cls(**data)


def write_atomically(path: Path, text: str) -> None:
    """Write `text` to `path` through a temporary file and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)
    os.replace(tmp, path)
