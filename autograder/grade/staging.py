"""Finding each student's files in what an instructor collected.

Accepted layouts:

- a folder with one sub-folder per student (`alice/01_lora_layer.ipynb`, ...) or one zip per
  student (`alice.zip`); the sub-folder or zip name is the student id;
- an LMS export zip: each member path carries the student id, found by a regular expression
  (`--id-pattern`, a named group `id`); the default takes the first path component, and Moodle's
  `Name Surname_12345_assignsubmission_file_` folders give `12345`. Zips inside it (students
  who uploaded a zip) are opened too.

Each student's notebooks, `rapport.md` and images are copied into a staging folder of their own:
notebooks and the report by file name wherever they sit in the student's tree, images at their
path relative to the report's folder (so that the report's links still point at them).
"""

from __future__ import annotations

import io
import json
import re
import shutil
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path, PurePosixPath

from autograder.build.notebook_source import NOTEBOOK_NAMES

DEFAULT_ID_PATTERN = r"^(?:[^/]*?_(?P<moodle>\d+)_assignsubmission[^/]*|(?P<id>[^/]+))/"
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}
KEPT_SUFFIXES = {".ipynb", ".md", *IMAGE_SUFFIXES}
HISTORY_NAME = "history.json"  # the values of the plots, next to them (helpers.plots)
REPORT_NAME = "rapport.md"
_IGNORED_PARTS = {"__MACOSX", ".ipynb_checkpoints"}


class SubmissionError(ValueError):
    """The collected submissions cannot be read; the message says why."""


@dataclass(frozen=True)
class Submission:
    """One student's staged files."""

    student_id: str
    folder: Path


def _safe_id(raw: str) -> str:
    student_id = re.sub(r"[^A-Za-z0-9_.@-]+", "_", raw.strip()).strip("._")
    if not student_id:
        raise SubmissionError(f"Cannot make a student id out of {raw!r}.")
    return student_id


def _kept(relative: PurePosixPath) -> bool:
    if _IGNORED_PARTS & set(relative.parts) or relative.name.startswith("._"):
        return False
    return relative.suffix.lower() in KEPT_SUFFIXES or relative.name == HISTORY_NAME


def _unsafe(relative: PurePosixPath) -> bool:
    """An absolute path or one with '..' (a crafted zip) would be written outside the staging."""
    return relative.is_absolute() or ".." in relative.parts


def _submission_root(paths: list[PurePosixPath]) -> PurePosixPath | None:
    """The folder the report's links are relative to: the shallowest rapport.md's, else the
    shallowest lab notebook's (None when there is neither)."""
    for wanted in (lambda p: p.name == REPORT_NAME, lambda p: p.stem in NOTEBOOK_NAMES):
        found = sorted((p for p in paths if wanted(p)), key=lambda p: len(p.parts))
        if found:
            return found[0].parent
    return None


def _target(dest_root: Path, relative: PurePosixPath, root: PurePosixPath | None) -> Path | None:
    """Where a file goes: notebooks and markdown at the top; images at their path relative to
    the report's folder (so its links still work), else under their `img/...` path, else at the
    top (the plots' history too). None for notebooks that are not the lab's."""
    if relative.suffix.lower() in IMAGE_SUFFIXES or relative.name == HISTORY_NAME:
        parts = relative.parts
        if root is not None and parts[:len(root.parts)] == root.parts:
            return dest_root.joinpath(*parts[len(root.parts):])
        return dest_root.joinpath(*parts[parts.index("img"):]) if "img" in parts \
            else dest_root / relative.name
    if relative.suffix == ".ipynb" and relative.stem not in NOTEBOOK_NAMES:
        return None
    return dest_root / relative.name


STAGING_RECORD = "staging.json"  # what a student's archive could not give, as data

# Kinds of staging problem, recorded per path in STAGING_RECORD.
OUTSIDE = "path outside the submission"
UNREADABLE_FILE = "file cannot be read"
NOT_A_ZIP = "not a readable zip"


@dataclass(frozen=True)
class StagingProblem:
    """A path of a student's tree that was skipped, and why (one of the kinds above)."""

    path: str
    kind: str
    detail: str = ""


def _record_problem(dest: Path, problem: StagingProblem) -> None:
    problems = [*staging_problems(dest), problem]
    (dest / STAGING_RECORD).write_text(json.dumps([asdict(p) for p in problems], indent=1),
                                       encoding="utf-8")


def staging_problems(folder: Path) -> list[StagingProblem]:
    """The problems recorded while staging `folder` (empty when everything was read)."""
    record = Path(folder) / STAGING_RECORD
    if not record.is_file():
        return []
    return [StagingProblem(**entry) for entry in json.loads(record.read_text(encoding="utf-8"))]


def lost_in_staging(folder: Path, file_name: str) -> bool:
    """True when `file_name` may have been in the student's archive but could not be read
    (the archive itself was damaged, or that file was)."""
    return any(p.kind == NOT_A_ZIP or (p.kind == UNREADABLE_FILE
                                       and PurePosixPath(p.path).name == file_name)
               for p in staging_problems(folder))


def _stage_entries(entries: list[tuple[PurePosixPath, Callable[[], bytes]]], dest: Path) -> None:
    """Stage one student's files, given as (path in their tree, reader); zips inside are opened.

    A file that cannot be read, or a path that would leave `dest`, is recorded in
    STAGING_RECORD and skipped, never raised.
    """
    kept = []
    for relative, read in entries:
        if _unsafe(relative):
            _record_problem(dest, StagingProblem(str(relative), OUTSIDE))
        elif relative.suffix.lower() == ".zip":
            try:
                _stage_zip_bytes(read(), dest, str(relative))
            except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as exc:
                _record_problem(dest, StagingProblem(str(relative), UNREADABLE_FILE, str(exc)))
        elif _kept(relative):
            kept.append((relative, read))
    root = _submission_root([relative for relative, _ in kept])
    # deepest first, so that of two files with the same name the shallowest one is kept
    for relative, read in sorted(kept, key=lambda entry: -len(entry[0].parts)):
        target = _target(dest, relative, root)
        if target is None:
            continue
        try:
            data = read()
        except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as exc:
            _record_problem(dest, StagingProblem(str(relative), UNREADABLE_FILE, str(exc)))
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)


def _zip_entries(archive: zipfile.ZipFile, members: list[zipfile.ZipInfo]):
    return [(PurePosixPath(info.filename), partial(archive.read, info))
            for info in members if not info.is_dir()]


def _stage_zip_bytes(data: bytes | Path, dest: Path, label: str) -> None:
    """Stage a student's zip; a damaged one is recorded in STAGING_RECORD, never raised."""
    try:
        with zipfile.ZipFile(io.BytesIO(data) if isinstance(data, bytes) else data) as archive:
            _stage_entries(_zip_entries(archive, archive.infolist()), dest)
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        _record_problem(dest, StagingProblem(label, NOT_A_ZIP, str(exc)))


def _stage_folder(source: Path, dest: Path) -> None:
    files = sorted(path for path in source.rglob("*") if path.is_file())
    _stage_entries([(PurePosixPath(path.relative_to(source).as_posix()), path.read_bytes)
                    for path in files], dest)


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
                _stage_entries(_zip_entries(archive, members), dest)
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
