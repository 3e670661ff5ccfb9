"""Finding each student's files in what an instructor collected.

Accepted layouts:

- a folder with one sub-folder per student (`alice/01_lora_layer.ipynb`, ...) or one zip per
  student (`alice.zip`); the sub-folder or zip name is the student id;
- an LMS export zip: each member path carries the student id, found by a regular expression
  (`--id-pattern`, a named group `id`); the default takes the first path component, and Moodle's
  `Name Surname_12345_assignsubmission_file_` folders give `12345`. Zips inside it (students
  who uploaded a zip) are opened too.

Each student's notebooks, `rapport.md` and images are copied into a staging folder of their own,
matched by file name wherever they sit in the student's tree.
"""

from __future__ import annotations

import io
import re
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from autograder.notebook_source import NOTEBOOK_NAMES

DEFAULT_ID_PATTERN = r"^(?:[^/]*?_(?P<moodle>\d+)_assignsubmission[^/]*|(?P<id>[^/]+))/"
KEPT_SUFFIXES = {".ipynb", ".md", ".png", ".jpg", ".jpeg"}
_IGNORED_PARTS = {"__MACOSX", ".ipynb_checkpoints"}


class SubmissionError(ValueError):
    """The collected submissions cannot be read; the message says why."""


@dataclass(frozen=True)
class Submission:
    """One student's staged files."""

    student_id: str
    folder: Path

    def notebook(self, name: str) -> Path:
        return self.folder / f"{name}.ipynb"


def _safe_id(raw: str) -> str:
    student_id = re.sub(r"[^A-Za-z0-9_.@-]+", "_", raw.strip()).strip("._")
    if not student_id:
        raise SubmissionError(f"Cannot make a student id out of {raw!r}.")
    return student_id


def _kept(relative: PurePosixPath) -> bool:
    if _IGNORED_PARTS & set(relative.parts) or relative.name.startswith("._"):
        return False
    return relative.suffix.lower() in KEPT_SUFFIXES


def _stage_file(dest_root: Path, relative: PurePosixPath, data: bytes) -> None:
    """Notebooks and the report land at the top; images keep their `img/...` path."""
    name = relative.name
    if relative.suffix.lower() in {".png", ".jpg", ".jpeg"}:
        parts = relative.parts
        target = dest_root / Path(*parts[parts.index("img"):]) if "img" in parts else dest_root / name
    elif relative.suffix == ".ipynb" and relative.stem not in NOTEBOOK_NAMES:
        return
    else:
        target = dest_root / name
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)


STAGING_ERROR = "STAGING_ERROR.txt"  # written instead of files a student's archive could not give


def _stage_members(archive: zipfile.ZipFile, members: list[zipfile.ZipInfo], dest: Path) -> None:
    for info in members:
        if info.is_dir():
            continue
        relative = PurePosixPath(info.filename)
        if relative.suffix.lower() == ".zip":
            _stage_zip_bytes(archive.read(info), dest, info.filename)
        elif _kept(relative):
            _stage_file(dest, relative, archive.read(info))


def _stage_zip_bytes(data: bytes | Path, dest: Path, label: str) -> None:
    """Stage a student's zip; a damaged one is recorded in STAGING_ERROR, never raised."""
    try:
        with zipfile.ZipFile(io.BytesIO(data) if isinstance(data, bytes) else data) as archive:
            _stage_members(archive, archive.infolist(), dest)
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        with open(dest / STAGING_ERROR, "a", encoding="utf-8") as out:
            out.write(f"{label}: not a readable zip ({exc})\n")


def _stage_folder(source: Path, dest: Path) -> None:
    for path in sorted(source.rglob("*")):
        relative = PurePosixPath(path.relative_to(source).as_posix())
        if path.is_file() and path.suffix.lower() == ".zip":
            _stage_zip_bytes(path, dest, str(relative))
        elif path.is_file() and _kept(relative):
            _stage_file(dest, relative, path.read_bytes())


def _student_of(member: str, pattern: re.Pattern) -> str | None:
    match = pattern.search(member)
    if not match:
        return None
    groups = {k: v for k, v in match.groupdict().items() if v}
    return groups.get("id") or groups.get("moodle") or match.group(0)


def stage_submissions(source: Path, staging: Path, id_pattern: str | None = None) -> list[Submission]:
    """Copy every student's files from `source` (folder or LMS zip) into `staging/<id>/`."""
    source = Path(source)
    if not source.exists():
        raise SubmissionError(f"{source} does not exist.")
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    if source.is_file():
        if not zipfile.is_zipfile(source):
            raise SubmissionError(f"{source} is neither a folder nor a zip file.")
        pattern = re.compile(id_pattern or DEFAULT_ID_PATTERN)
        with zipfile.ZipFile(source) as archive:
            per_student: dict[str, list[zipfile.ZipInfo]] = {}
            for info in archive.infolist():
                if info.is_dir() or _IGNORED_PARTS & set(PurePosixPath(info.filename).parts):
                    continue
                student = _student_of(info.filename, pattern)
                if student is None:
                    raise SubmissionError(
                        f"No student id in {info.filename!r} with pattern {pattern.pattern!r}: "
                        "give --id-pattern with a named group (?P<id>...)."
                    )
                per_student.setdefault(_safe_id(student), []).append(info)
            for student, members in per_student.items():
                dest = staging / student
                dest.mkdir()
                _stage_members(archive, members, dest)
    else:
        for entry in sorted(source.iterdir()):
            if entry.name.startswith(".") or entry.name in _IGNORED_PARTS:
                continue
            if entry.is_dir():
                dest = staging / _safe_id(entry.name)
                dest.mkdir()
                _stage_folder(entry, dest)
            elif entry.suffix.lower() == ".zip":
                dest = staging / _safe_id(entry.stem)
                dest.mkdir()
                _stage_zip_bytes(entry, dest, entry.name)
    submissions = [Submission(p.name, p) for p in sorted(staging.iterdir())]
    if not submissions:
        raise SubmissionError(f"No student submission found in {source}.")
    return submissions
