"""Splitting a report into the template's sections, and the findings about their answers.

A section starts at a template heading or `**Qn.**` label; a numbered heading may be reworded
if its number and level are kept. The header section's table (or `key: value` lines) must give
every HEADER_FIELDS value.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from helpers.report_check.findings import HEADER, NO_ANSWER, TEMPLATE_TEXT, Finding

HEADER_SECTION = "reproductibilité"              # part of the header's heading
HEADER_FIELDS = {"OS": r"\w", "Python": r"\d+\.\d+", "torch": r"\d+\.\d+", "Seed": r"^\d+$"}
START = "début du rapport / start of the report"

_HEADING = re.compile(r"(#{1,6})\s+(.*?)[\s#]*$")
_LABEL = re.compile(r"\*\*([^*]+)\*\*(.*)$")
_NUMBERED = re.compile(r"(\d+)\.\s")
FENCE = re.compile(r"(```|~~~)")
_PLACEHOLDER = re.compile(r"[*_]*\s*à compléter\s*\.?\s*[*_]*", re.IGNORECASE)  # fullmatch
_COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)


def norm(line: str) -> str:
    """`line` with its runs of white space made single spaces."""
    return " ".join(line.split())


def is_placeholder(line: str) -> bool:
    return bool(_PLACEHOLDER.fullmatch(line.strip()))


def _key(title: str) -> str:
    return norm(title.replace("`", "").replace("*", "")).casefold().rstrip(" .:")


def _marker(line: str) -> tuple[str, str, str] | None:
    """(id, title, rest of the line) when `line` is a heading or starts with a bold label."""
    if heading := _HEADING.match(line):
        level, title = len(heading[1]), heading[2]
        number = _NUMBERED.match(title)
        return f"h{level}:{number[1] if number else _key(title)}", title, ""
    if label := _LABEL.match(line):
        title = label[1].strip().rstrip(".: ")
        return f"label:{_key(title)}", title, label[2]
    return None


@dataclass
class Part:
    """A stretch of markdown from one section marker to the next."""

    id: str | None  # None: the text before the first known heading
    title: str
    lines: list[str]

    @property
    def key(self) -> str:
        return _key(self.title)


def _split(text: str, known: set[str] | None = None) -> list[Part]:
    """Parts of `text` starting at each marker (only those in `known`, when given)."""
    parts = [Part(None, START, [])]
    fenced = False
    for line in text.splitlines():
        stripped = line.strip()
        if FENCE.match(stripped):
            fenced = not fenced
        marker = None if fenced else _marker(stripped)
        if marker and (known is None or marker[0] in known):
            parts.append(Part(marker[0], marker[1], [marker[2]] if marker[2].strip() else []))
        else:
            parts[-1].lines.append(line)
    return parts


def read_markdown(path: Path) -> str:
    """A markdown file's text, NFC-normalised, without its HTML comments."""
    text = unicodedata.normalize("NFC", path.read_text(encoding="utf-8-sig", errors="replace"))
    return _COMMENT.sub("", text)


@dataclass(frozen=True)
class Template:
    """The report template: its sections, its lines (not the student's) and its text."""

    parts: list[Part]
    lines: frozenset[str]   # every line of the template, normalised
    text: str

    @classmethod
    def read(cls, path: Path) -> Template:
        if not path.is_file():
            raise FileNotFoundError(f"Report template not found: {path}")
        text = read_markdown(path)
        parts = _split(text)
        lines = frozenset(norm(line) for p in parts for line in p.lines)
        return cls([p for p in parts if p.id is not None], lines, text)

    def answer_lines(self, part: Part) -> list[str]:
        """The lines of a report part that are the student's: not template lines, not fences."""
        return [line for line in part.lines
                if norm(line) and norm(line) not in self.lines and not is_placeholder(line)
                and not FENCE.match(line.strip())]


def report_parts(text: str, template: Template) -> tuple[Part, dict[str, Part]]:
    """The report's text before the first section, and its sections by template id."""
    start, *parts = _split(text, {p.id for p in template.parts})
    by_id: dict[str, Part] = {}
    for part in parts:
        if part.id in by_id:
            by_id[part.id].lines.extend(part.lines)
        else:
            by_id[part.id] = part
    return start, by_id


OPTIONAL_MARK = "facultatif"  # in a template heading: the section may be left out


def answer_findings(section: Part, part: Part, template: Template) -> list[Finding]:
    """A required section left unanswered, or its placeholder left in."""
    required = any(map(is_placeholder, section.lines))
    if OPTIONAL_MARK in section.title.lower() and not template.answer_lines(part):
        return []
    if required and not template.answer_lines(part):
        return [Finding(section.title, NO_ANSWER,
                        "remplacez « À compléter » par votre réponse / "
                        "replace « À compléter » with your answer")]
    if any(map(is_placeholder, part.lines)):
        return [placeholder_left(section.title)]
    return []


def placeholder_left(title: str) -> Finding:
    return Finding(title, TEMPLATE_TEXT,
                   "supprimez la ligne « À compléter » / remove the « À compléter » line")


def header_findings(title: str, part: Part | None) -> list[Finding]:
    """The header's table rows (or `key: value` lines) must give every HEADER_FIELDS value."""
    values: dict[str, str] = {}
    for line in part.lines if part else []:
        if "|" in line:
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
        else:
            cells = [c.strip() for c in line.split(":", 1)]
        if len(cells) >= 2:
            values.setdefault(cells[0].casefold(), cells[1])
    missing = [name for name, pattern in HEADER_FIELDS.items()
               if not re.search(pattern, values.get(name.casefold(), ""))]
    if not missing:
        return []
    return [Finding(title, HEADER,
                    f"à renseigner / to fill in: {', '.join(missing)} — collez le tableau "
                    "d'environment_report(seed=SEED, device=device) / paste its table")]
