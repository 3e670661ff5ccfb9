"""rapport.md as an nbgrader notebook, so formgrader grades it like a written answer.

The course gets one more notebook, `rapport`, that students never see: the rubric
(`autograder/masters/report_rubric.yaml`, locked), the report check's findings, and one
manually graded markdown cell (`report`, out of the rubric's total) holding the student's
rapport.md with its images embedded as cell attachments, so formgrader and the feedback show
them. `report_master` is that notebook in the course's source folder; `report_submission` fills
it for one student (the grading worker then records it with nbgrader autograde, nothing run).
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from pathlib import Path

import nbformat
import yaml

from helpers.report_check import REPORT_NAME, ReportCheck

RUBRIC_PATH = Path(__file__).resolve().parents[1] / "masters" / "report_rubric.yaml"
REPORT_NOTEBOOK = "rapport"   # notebook id in the gradebook (the file is rapport.ipynb)
REPORT_CELL = "report"        # grade_id of the report's points box
RUBRIC_CELL = "report_rubric"
ANSWER_STUB = "YOUR ANSWER HERE"  # what nbgrader leaves in an unanswered written cell
MAX_IMAGE_BYTES = 5_000_000
_IMAGE_TYPES = {b"\x89PNG\r\n\x1a\n": "image/png", b"\xff\xd8\xff": "image/jpeg"}
_MD_IMAGE = re.compile(r"(!\[[^\]]*\]\(\s*)(?:<([^>]+)>|([^)\s]+))")


@dataclass(frozen=True)
class RubricLine:
    section: str
    points: float
    criterion: str


def load_rubric(path: Path = RUBRIC_PATH) -> list[RubricLine]:
    """The rubric's lines; a clear ValueError when the file is not a list of such lines."""
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    if not isinstance(data, list) or not data:
        raise ValueError(f"{path}: expected a list of lines (section, points, criterion)")
    lines = []
    for number, item in enumerate(data, 1):
        if not isinstance(item, dict) or set(item) != {"section", "points", "criterion"}:
            raise ValueError(f"{path}: line {number} needs exactly section, points, criterion")
        points = item["points"]
        if isinstance(points, bool) or not isinstance(points, (int, float)) or points < 0:
            raise ValueError(f"{path}: line {number}: points must be a number >= 0")
        lines.append(RubricLine(str(item["section"]), float(points), str(item["criterion"])))
    return lines


def rubric_markdown(rubric: list[RubricLine]) -> str:
    total = sum(line.points for line in rubric)
    rows = [f"| {line.section} | {line.criterion} | {line.points:g} |" for line in rubric]
    return "\n".join([f"### Rubric ({total:g} points)", "",
                      "| section | what earns the points | points |", "| --- | --- | ---: |",
                      *rows])


def _nbgrader(**fields) -> dict:
    return {"nbgrader": {"schema_version": 3, "task": False, **fields}}


def report_master(rubric: list[RubricLine] | None = None) -> nbformat.NotebookNode:
    """The `rapport` notebook of the course's source folder."""
    rubric = rubric if rubric is not None else load_rubric()
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    title = nbformat.v4.new_markdown_cell(
        f"# {REPORT_NAME}\n\nThe student's report, graded with the rubric below; the report "
        "check's findings come first (numbers quoted that no output printed, missing sections "
        "or images).")
    locked = nbformat.v4.new_markdown_cell(rubric_markdown(rubric), metadata=_nbgrader(
        grade=False, solution=False, locked=True, grade_id=RUBRIC_CELL))
    findings = nbformat.v4.new_markdown_cell("Report check: not run.")
    answer = nbformat.v4.new_markdown_cell(ANSWER_STUB, metadata=_nbgrader(
        grade=True, solution=True, locked=False, grade_id=REPORT_CELL,
        points=sum(line.points for line in rubric)))
    nb.cells = [title, locked, findings, answer]
    for index, cell in enumerate(nb.cells):
        cell.id = cell.metadata.get("nbgrader", {}).get("grade_id") or f"cell-{index:02d}"
    return nb


def write_report_master(dest: Path) -> Path:
    """Write `rapport.ipynb` into a course's source folder `dest`."""
    dest.mkdir(parents=True, exist_ok=True)
    path = dest / f"{REPORT_NOTEBOOK}.ipynb"
    nbformat.write(report_master(), path)
    return path


def _image_file(folder: Path, link: str) -> Path | None:
    """The regular file inside `folder` that a relative image link names, else None."""
    if re.match(r"[a-zA-Z][a-zA-Z0-9+.-]*:|/|\\", link):
        return None  # a URL, an absolute path, a drive
    root = folder.resolve()
    path = (folder / link).resolve()
    if root not in path.parents or not path.is_file() or (folder / link).is_symlink():
        return None
    return path


def embed_images(text: str, folder: Path) -> tuple[str, dict]:
    """Markdown whose relative PNG/JPEG links become cell attachments, and those attachments."""
    attachments: dict[str, dict[str, str]] = {}

    def replace(match: re.Match) -> str:
        link = match.group(2) or match.group(3)
        path = _image_file(folder, link)
        if path is None or path.stat().st_size > MAX_IMAGE_BYTES:
            return match.group(0)
        data = path.read_bytes()
        kind = next((t for magic, t in _IMAGE_TYPES.items() if data.startswith(magic)), None)
        if kind is None:
            return match.group(0)
        name = re.sub(r"[^\w.-]", "_", Path(link).as_posix())
        attachments[name] = {kind: base64.b64encode(data).decode("ascii")}
        return f"{match.group(1)}attachment:{name}"

    return _MD_IMAGE.sub(replace, text), attachments


def report_submission(master: nbformat.NotebookNode, folder: Path, check: ReportCheck,
                      checksum: str) -> nbformat.NotebookNode:
    """The `rapport` notebook of the student whose files are in `folder`.

    checksum: the released answer cell's nbgrader checksum, so that a missing report counts as
    an unanswered cell (0 points, nothing to grade), as in the other notebooks.
    """
    nb = nbformat.from_dict(master)
    findings, answer = nb.cells[2], nb.cells[3]
    findings.source = re.sub(r"^(#+) ", r"##\1 ", check.to_markdown(), flags=re.MULTILINE)
    answer.metadata["nbgrader"]["checksum"] = checksum
    report = Path(folder) / REPORT_NAME
    if report.is_file() and not report.is_symlink():
        text = report.read_text(encoding="utf-8", errors="replace")
        answer.source, attachments = embed_images(text, Path(folder))
        if attachments:
            answer.attachments = attachments
    return nb
