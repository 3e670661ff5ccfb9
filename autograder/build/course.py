"""The nbgrader course behind the lab, configured in code (no nbgrader_config.py to edit).

nbgrader wants a course folder (`source/`, `release/`, `submitted/`, `autograded/`,
`feedback/` and a gradebook). Each command builds one in a working folder from the master
sources, so the repository holds only the markdown masters and the generated release.
"""

from __future__ import annotations

import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import nbformat
from traitlets.config import Config

from autograder.build.notebook_source import NOTEBOOK_NAMES, build_masters
from helpers.notebook_format import notebook_text

ASSIGNMENT = "lora_lab"
REPO_ROOT = Path(__file__).resolve().parents[2]
RELEASE_DIR = REPO_ROOT / "notebooks"


class NbgraderError(RuntimeError):
    """An nbgrader step failed; the message carries nbgrader's log."""


def gradebook_url(root: Path) -> str:
    """The SQLAlchemy URL of the gradebook of the course folder `root`."""
    return f"sqlite:///{Path(root) / 'gradebook.db'}"


def course_config(root: Path) -> Config:
    """nbgrader settings shared by every command (release, autograde, feedback)."""
    c = Config()
    c.CourseDirectory.root = str(root)
    c.CourseDirectory.course_id = ASSIGNMENT
    c.CourseDirectory.db_url = gradebook_url(root)
    c.CourseDirectory.ignore = [".ipynb_checkpoints", "*.pyc", "__pycache__", ".DS_Store"]
    return c


def alembic_head() -> str:
    """The schema version nbgrader stamps on a new gradebook, read in this process."""
    from alembic.script import ScriptDirectory
    from nbgrader.dbutil import ALEMBIC_DIR

    return ScriptDirectory(ALEMBIC_DIR).get_current_head()


def without_alembic_subprocess() -> None:
    """Let nbgrader create gradebooks without running `alembic heads` in a subprocess.

    nbgrader 0.9.6 asks that command for the version of every new gradebook (the template's
    and the class's in each grading run); the subprocess imports nbgrader again, seconds on a
    small machine, for a constant that `alembic_head` reads from the same migration scripts.
    """
    import nbgrader.api

    nbgrader.api.get_alembic_version = alembic_head


@contextmanager
def nbgrader_session_warnings_ignored() -> Iterator[None]:
    """Inside the block, nbgrader's harmless SQLAlchemy 2 warnings are not printed.

    nbgrader's backrefs cascade makes SQLAlchemy warn "Object of type <SubmittedAssignment>
    not in session, add operation along ... will not proceed" when a submission is added:
    three lines of noise per student in the grader's output and in each student's log.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Object of type <Submitted\w+> not in "
                                r"session, add operation along")
        yield


def nbgrader_api(root: Path, config: Config | None = None):
    """An NbGraderAPI on the course folder `root`."""
    from nbgrader.apps import NbGraderAPI  # slow import: only when nbgrader is needed

    without_alembic_subprocess()
    merged = course_config(root)
    if config is not None:
        merged.merge(config)
    return NbGraderAPI(config=merged)


def _checked(result: dict, what: str) -> dict:
    if not result.get("success"):
        raise NbgraderError(f"nbgrader {what} failed:\n{result.get('error') or result.get('log')}")
    return result


def generate_release_into(root: Path) -> Path:
    """nbgrader generate_assignment on the course folder `root` (masters already in source/).

    Also records the assignment, its notebooks and graded cells in root's gradebook.
    """
    _checked(nbgrader_api(root).generate_assignment(ASSIGNMENT, force=True, create=True),
             "generate_assignment")
    return root / "release" / ASSIGNMENT


def generate_release(dest: Path) -> list[Path]:
    """Build the masters and let nbgrader generate the student notebooks into `dest`."""
    with tempfile.TemporaryDirectory(prefix="lora-release-") as tmp:
        root = Path(tmp)
        build_masters(root / "source" / ASSIGNMENT)
        generate_release_into(root)
        dest.mkdir(parents=True, exist_ok=True)
        written = []
        for name in NOTEBOOK_NAMES:
            src = root / "release" / ASSIGNMENT / f"{name}.ipynb"
            nb = nbformat.read(src, as_version=4)
            path = dest / src.name
            path.write_text(notebook_text(nb), encoding="utf-8")  # as JupyterLab saves it
            written.append(path)
    return written


def stale_release_notebooks(release_dir: Path = RELEASE_DIR) -> list[str]:
    """Names of the notebooks in `release_dir` that differ from a fresh release (empty: current)."""
    with tempfile.TemporaryDirectory(prefix="lora-release-check-") as tmp:
        fresh = {p.name: p.read_text(encoding="utf-8") for p in generate_release(Path(tmp))}
    stale = []
    for name, text in fresh.items():
        current = release_dir / name
        if not current.is_file() or current.read_text(encoding="utf-8") != text:
            stale.append(name)
    return stale

