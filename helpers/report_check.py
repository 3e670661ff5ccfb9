"""Checking a student's rapport.md against the template and the student's own notebook outputs.

`check_report(folder)` reads FOLDER/rapport.md, the template (`rapport_template.md` at the
repository root), the images the report links and the six executed notebooks (FOLDER/NN_*.ipynb,
or FOLDER/notebooks/NN_*.ipynb in a clone of the course pack). It informs the grader and the
student; it awards no points. Findings, by kind:

- `missing report`, `missing section`: no rapport.md; a template heading or `**Qn.**` label not
  found in the report (a numbered heading may be reworded if its number and level are kept);
- `no answer`, `template text`: a section whose template holds `*À compléter.*` has no line of
  the student's own (lines identical to template lines don't count), or the placeholder is left;
- `header`: the reproducibility table lacks OS, Python, torch (with versions) or an integer Seed;
- `image`: a linked image that is a URL, an absolute path, outside the folder, missing (letter
  case counts), or not a readable PNG/JPEG; or fewer figures than the template links;
- `number`: a number quoted in Q2-Q5 or section 6 that no notebook printed (see below);
- `notebook`: a notebook missing, unreadable or never executed.

The report is *complete* when its only findings, if any, are `number` and `notebook` ones.
`python -m helpers.report_check PATH` (or, for instructors, `python -m autograder check-report
PATH`) prints `to_markdown()` and exits 0 when there is no
finding at all, 1 when there is any, 2 when PATH is not a folder.

Which numbers are checked, in the student's own lines of Q2, Q3, Q4, Q5 and section 6:
percentages (`0,81 %`), decimals (`0.8074`, `12,3`), durations (`164 s`, `2,7 min`) and integers
from 10,000 up (parameter counts). Not checked: other integers (rank 8, 2 classes, 12 blocks,
768, 3072, years, section numbers, `124M`), numbers inside names or versions (`Q2`, `bf16`,
`2.13.0`), the operands of a written calculation (`4 × 8 × (768 + 768)`, `16/8`) and its result
(`(768 + 3072) = 110 592`, `× 12 = 1 327 104`).

How a quoted number matches: separators `1,327,104`, `1 327 104` (also U+00A0 and U+202F),
`1327104`, decimal comma or point (`1,327` reads as 1327 or 1.327). It matches an output number
when it equals that number rounded to the quoted decimals (0.81 % for 0.8074, 95,7 % for 95.67 %,
both ways of rounding a half accepted), with the output read as printed, or, for a quoted
percentage, an output fraction times 100 (96 % for 0.9567), or, for a quoted plain number, an
output percentage over 100 (0.9567 for 95.67 %). `2,7 min` is 162 s ± 3 s; `1,3 M` is
1,300,000 ± 50,000.

Where numbers are looked for: every cell output of the six notebooks (stream text, text/plain,
text/markdown, text/html without tags), the code of their non-test cells (hyperparameters such
as `lr=5e-4`, `weight_decay=0.1`), the template's own text, and `GPT2_SIZES`. Not the notebooks'
markdown: it states the expected results, and a report must quote the student's own run.

To avoid false positives, a student: quotes numbers as the notebooks print them (paste the
`trainable params: ...` line, the epoch and accuracy lines); rounds rather than truncates (95.67 %
may be 95,7 % or 96 %, not 95 %); gives epoch times in seconds as printed; writes other
quantities as a calculation (`50 257 × 768 = 38 597 376`); and re-runs and saves the notebooks
after changing them, so that the outputs handed in are the ones quoted.
"""

from __future__ import annotations

import html
import re
import unicodedata
from bisect import bisect_left
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from urllib.parse import unquote

import nbformat
from PIL import Image

from helpers.paths import LAB_NOTEBOOKS as NOTEBOOK_NAMES
from helpers.paths import REPO_ROOT

REPORT_NAME = "rapport.md"
TEMPLATE_PATH = REPO_ROOT / "rapport_template.md"
HEADER_SECTION = "reproductibilité"              # part of the header's heading
HEADER_FIELDS = {"OS": r"\w", "Python": r"\d+\.\d+", "torch": r"\d+\.\d+", "Seed": r"^\d+$"}
NUMBER_SECTIONS = ("q2", "q3", "q4", "q5", "6. inférence")  # start of the section keys
RESULT_MIN = 10_000                              # smaller bare integers are not results
IMAGE_FORMATS = ("PNG", "JPEG")
# Sizes of GPT-2 small that answers derive by hand: vocabulary, token embedding (= old head),
# position embedding, one transformer block, LoRA parameters of one block at rank 8.
GPT2_SIZES = (50_257, 38_597_376, 786_432, 7_087_872, 110_592)

# Finding kinds.
MISSING_REPORT = "missing report"
MISSING_SECTION = "missing section"
NO_ANSWER = "no answer"
TEMPLATE_TEXT = "template text"
HEADER = "header"
IMAGE = "image"
NUMBER = "number"
NOTEBOOK = "notebook"
_INCOMPLETE = (MISSING_REPORT, MISSING_SECTION, NO_ANSWER, TEMPLATE_TEXT, HEADER, IMAGE)
_LABELS = {
    MISSING_REPORT: "rapport absent / report missing",
    MISSING_SECTION: "section absente / section missing",
    NO_ANSWER: "réponse manquante / no answer",
    TEMPLATE_TEXT: "texte du modèle / template text",
    HEADER: "en-tête / header",
    IMAGE: "figure / image",
    NUMBER: "nombre / number",
    NOTEBOOK: "notebook",
}
_NUMBER_HINT = ("Les nombres cités doivent apparaître dans les sorties de vos notebooks : "
                "citez-les tels qu'affichés, écrivez les autres sous forme de calcul. / "
                "Quoted numbers must appear in your notebooks' outputs: quote them as printed, "
                "write other quantities as a calculation.")
_START = "début du rapport / start of the report"
_NOTEBOOKS = "notebooks"


@dataclass(frozen=True)
class Finding:
    """One thing to fix in the report; `value` is the number or image link concerned."""

    section: str
    kind: str
    detail: str
    value: str = ""


@dataclass
class ReportCheck:
    """Every finding about one submission's report, in the report's order."""

    folder: Path
    findings: list[Finding] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        """Report present, every section answered, header filled, figures present."""
        return not any(f.kind in _INCOMPLETE for f in self.findings)

    @property
    def header_ok(self) -> bool:
        return not any(f.kind in (HEADER, MISSING_REPORT) for f in self.findings)

    @property
    def unmatched_numbers(self) -> list[Finding]:
        return [f for f in self.findings if f.kind == NUMBER]

    @property
    def missing_images(self) -> list[str]:
        """Image links of the report that do not give a readable image of the submission."""
        return [f.value for f in self.findings if f.kind == IMAGE and f.value]

    def summary_columns(self) -> dict[str, str | int]:
        """Columns for grades.csv."""
        return {"report_complete": "yes" if self.complete else "no",
                "report_findings": len(self.findings),
                "report_unmatched_numbers": len(self.unmatched_numbers)}

    def _by_section(self) -> list[tuple[str, list[Finding]]]:
        groups: dict[str, list[Finding]] = {}
        for finding in self.findings:
            groups.setdefault(finding.section, []).append(finding)
        return list(groups.items())

    def _overview(self) -> list[str]:
        complete = "oui / yes" if self.complete else "non / no"
        return [f"Rapport complet / report complete: {complete}",
                f"Points à corriger / findings: {len(self.findings)}",
                f"Nombres absents des sorties / numbers in no output: "
                f"{len(self.unmatched_numbers)}"]

    def to_markdown(self) -> str:
        """What to fix, as markdown (also what `check-report` prints)."""
        lines = [f"# Vérification de {REPORT_NAME} / report check", ""]
        lines += [f"- {item}" for item in self._overview()]
        if not self.findings:
            lines += ["", "Rien à corriger. / Nothing to fix."]
        for section, findings in self._by_section():
            lines += ["", f"## {section}", ""]
            lines += [f"- **{_LABELS[f.kind]}** : {f.detail}" for f in findings]
        if self.unmatched_numbers:
            lines += ["", _NUMBER_HINT]
        return "\n".join(lines) + "\n"

    def to_html(self) -> str:
        """What to fix, as a standalone HTML page for the student's feedback."""
        e = html.escape
        parts = ["<!DOCTYPE html>", '<html><head><meta charset="utf-8">',
                 f"<title>{e(REPORT_NAME)}</title></head><body>",
                 f"<h1>Vérification de {e(REPORT_NAME)} / report check</h1>", "<ul>"]
        parts += [f"<li>{e(item)}</li>" for item in self._overview()]
        parts.append("</ul>")
        if not self.findings:
            parts.append("<p>Rien à corriger. / Nothing to fix.</p>")
        for section, findings in self._by_section():
            parts += [f"<h2>{e(section)}</h2>", "<ul>"]
            parts += [f"<li><strong>{e(_LABELS[f.kind])}</strong> : {e(f.detail)}</li>"
                      for f in findings]
            parts.append("</ul>")
        if self.unmatched_numbers:
            parts.append(f"<p>{e(_NUMBER_HINT)}</p>")
        parts.append("</body></html>")
        return "\n".join(parts) + "\n"


# --- splitting a report into the template's sections ---------------------------------------

_HEADING = re.compile(r"(#{1,6})\s+(.*?)[\s#]*$")
_LABEL = re.compile(r"\*\*([^*]+)\*\*(.*)$")
_NUMBERED = re.compile(r"(\d+)\.\s")
_FENCE = re.compile(r"(```|~~~)")
_PLACEHOLDER = re.compile(r"[*_]*\s*à compléter\s*\.?\s*[*_]*", re.IGNORECASE)  # fullmatch
_COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)


def _norm(line: str) -> str:
    return " ".join(line.split())


def _is_placeholder(line: str) -> bool:
    return bool(_PLACEHOLDER.fullmatch(line.strip()))


def _key(title: str) -> str:
    return _norm(title.replace("`", "").replace("*", "")).casefold().rstrip(" .:")


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
class _Part:
    id: str | None  # None: the text before the first known heading
    title: str
    lines: list[str]

    @property
    def key(self) -> str:
        return _key(self.title)


def _split(text: str, known: set[str] | None = None) -> list[_Part]:
    """Parts of `text` starting at each marker (only those in `known`, when given)."""
    parts = [_Part(None, _START, [])]
    fenced = False
    for line in text.splitlines():
        stripped = line.strip()
        if _FENCE.match(stripped):
            fenced = not fenced
        marker = None if fenced else _marker(stripped)
        if marker and (known is None or marker[0] in known):
            parts.append(_Part(marker[0], marker[1], [marker[2]] if marker[2].strip() else []))
        else:
            parts[-1].lines.append(line)
    return parts


def _read_markdown(path: Path) -> str:
    text = unicodedata.normalize("NFC", path.read_text(encoding="utf-8-sig", errors="replace"))
    return _COMMENT.sub("", text)


@dataclass(frozen=True)
class _Template:
    parts: list[_Part]
    lines: frozenset[str]   # every line of the template, normalised
    text: str

    @classmethod
    def read(cls, path: Path) -> _Template:
        if not path.is_file():
            raise FileNotFoundError(f"Report template not found: {path}")
        text = _read_markdown(path)
        parts = _split(text)
        lines = frozenset(_norm(line) for p in parts for line in p.lines)
        return cls([p for p in parts if p.id is not None], lines, text)

    def answer_lines(self, part: _Part) -> list[str]:
        """The lines of a report part that are the student's: not template lines, not fences."""
        return [line for line in part.lines
                if _norm(line) and _norm(line) not in self.lines and not _is_placeholder(line)
                and not _FENCE.match(line.strip())]


def _report_parts(text: str, template: _Template) -> tuple[_Part, dict[str, _Part]]:
    """The report's text before the first section, and its sections by template id."""
    start, *parts = _split(text, {p.id for p in template.parts})
    by_id: dict[str, _Part] = {}
    for part in parts:
        if part.id in by_id:
            by_id[part.id].lines.extend(part.lines)
        else:
            by_id[part.id] = part
    return start, by_id


def _answer_findings(section: _Part, part: _Part, template: _Template) -> list[Finding]:
    required = any(map(_is_placeholder, section.lines))
    if required and not template.answer_lines(part):
        return [Finding(section.title, NO_ANSWER,
                        "remplacez « À compléter » par votre réponse / "
                        "replace « À compléter » with your answer")]
    if any(map(_is_placeholder, part.lines)):
        return [_placeholder_left(section.title)]
    return []


def _placeholder_left(title: str) -> Finding:
    return Finding(title, TEMPLATE_TEXT,
                   "supprimez la ligne « À compléter » / remove the « À compléter » line")


def _header_findings(title: str, part: _Part | None) -> list[Finding]:
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


# --- images ---------------------------------------------------------------------------------

_MD_IMAGE = re.compile(r"!\[[^\]]*\]\(\s*(?:<([^>]+)>|([^)\s]+))")
_HTML_IMAGE = re.compile(r"<img\b[^>]*?\bsrc\s*=\s*[\"']([^\"']+)[\"']", re.IGNORECASE)
_DRIVE = re.compile(r"[a-zA-Z]:[\\/]")
_SCHEME = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*:")


def _image_links(lines: Iterable[str]) -> list[str]:
    links = []
    for line in lines:
        links += [m[1] or m[2] for m in _MD_IMAGE.finditer(line)]
        links += [m[1] for m in _HTML_IMAGE.finditer(line)]
    return links


def _is_file_exactly(root: Path, parts: tuple[str, ...]) -> bool:
    """root/parts is a file, with the same letter case (macOS and Windows ignore case)."""
    current = root
    for part in parts:
        if not current.is_dir() or part not in {p.name for p in current.iterdir()}:
            return False
        current = current / part
    return current.is_file()


def _image_problem(folder: Path, link: str) -> str | None:
    target = unquote(link).replace("\\", "/")
    if target.startswith("/") or _DRIVE.match(target):
        return "chemin absolu : mettez l'image dans img/ / absolute path: put the image in img/"
    if _SCHEME.match(target):
        return "adresse web, pas un fichier du rendu / a URL, not a file of the submission"
    root = folder.resolve()
    path = (root / target).resolve()
    if not path.is_relative_to(root):
        return "hors du dossier du rendu / outside the submission folder"
    if not _is_file_exactly(root, path.relative_to(root).parts):
        return "fichier absent du rendu / file not in the submission"
    try:
        with Image.open(path) as image:
            image_format = image.format
            image.verify()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):  # damaged file
        return "image illisible / not a readable image"
    if image_format not in IMAGE_FORMATS:
        return f"format {image_format} : PNG ou JPEG attendu / PNG or JPEG expected"
    return None


def _image_findings(title: str, lines: list[str], folder: Path) -> list[Finding]:
    findings = []
    for link in dict.fromkeys(_image_links(lines)):
        problem = _image_problem(folder, link)
        if problem:
            findings.append(Finding(title, IMAGE, f"{link} : {problem}", link))
    return findings


# --- numbers --------------------------------------------------------------------------------

_NUMBER = re.compile(
    r"(?<![\w.,])"
    r"(?P<int>[1-9]\d{0,2}(?P<sep>[,. \u00a0\u202f\u2009_'])\d{3}(?!\d)(?:(?P=sep)\d{3}(?!\d))*"
    r"|\d+)"
    r"(?:(?P<dec>[.,])(?P<frac>\d+))?"
    r"(?:[eE](?P<exp>[+\-\u2212]?\d+))?")
_UNIT = re.compile(r"[ \u00a0\u202f]?(%|s|secs?|secondes?|seconds?|min|minutes?|M|millions?|k|K)"
                   r"(?![^\W\d_]|['’])")
_UNIT_NAMES = {"%": "%", "min": "min", "minute": "min", "minutes": "min", "M": "M",
               "million": "M", "millions": "M", "k": "k", "K": "k"}
_FACTORS = {"min": Decimal(60), "M": Decimal(10) ** 6, "k": Decimal(1000)}
_OPERATOR = r"[+\u2212×÷·⋅/]|\\times|\\cdot|\\div"
_OPERAND_BEFORE = re.compile(rf"(?:{_OPERATOR}|[\d)]\s*[-*xX])[\s($]*$")
_OPERAND_AFTER = re.compile(rf"^[\s)$]*(?:{_OPERATOR}|[-*xX]\s*[\d(])")
_RESULT_BEFORE = re.compile(r"[\d)][\s)$]*(?:=|≈|\\approx)[\s$]*$")


@dataclass(frozen=True)
class _Number:
    text: str                                 # as written, unit included
    start: int
    end: int                                  # end of the digits, before the unit
    readings: tuple[tuple[Decimal, int], ...]  # (value, decimals); "1,327" has two
    unit: str                                 # "%", "s", "min", "M", "k" or ""


def _numbers(text: str) -> Iterator[_Number]:
    """Numbers written in `text`, except those inside names and versions."""
    for m in _NUMBER.finditer(text):
        after = text[m.end():]
        unit = _UNIT.match(after)
        if re.match(r"[.,]\d", after) or (not unit and re.match(r"[^\W\d]", after)):
            continue
        digits = re.sub(r"\D", "", m["int"])
        frac = m["frac"] or ""
        exp = int(m["exp"].replace("\u2212", "-")) if m["exp"] else 0
        value = Decimal(digits + (f".{frac}" if frac else "")).scaleb(exp)
        readings = [(value, len(frac) - exp)]
        if m["sep"] in (",", ".") and m["int"].count(m["sep"]) == 1 and not frac and not exp:
            readings.append((Decimal(m["int"].replace(",", ".")), 3))
        end = m.end() + (unit.end() if unit else 0)
        name = _UNIT_NAMES.get(unit[1], "s") if unit else ""
        yield _Number(text[m.start():end], m.start(), m.end(), tuple(readings), name)


class _Printed:
    """The numbers a student's notebooks printed, searchable within a tolerance."""

    def __init__(self, texts: Iterable[str], extra: Iterable[int] = ()) -> None:
        plain, as_percent, as_fraction = set(map(Decimal, extra)), set(), set()
        for text in texts:
            for number in _numbers(text):
                for value, _ in number.readings:
                    plain.add(value)
                    if number.unit == "%":
                        as_fraction.add(value / 100)
                    else:
                        as_percent.add(value * 100)
        self._plain, self._as_percent, self._as_fraction = (
            sorted(plain), sorted(as_percent), sorted(as_fraction))

    @staticmethod
    def _near(values: list[Decimal], value: Decimal, tolerance: Decimal) -> bool:
        i = bisect_left(values, value - tolerance)
        return i < len(values) and values[i] <= value + tolerance

    def has(self, value: Decimal, tolerance: Decimal, percent: bool) -> bool:
        other = self._as_percent if percent else self._as_fraction
        return self._near(self._plain, value, tolerance) or self._near(other, value, tolerance)


def _is_result(value: Decimal, decimals: int, unit: str) -> bool:
    """Whether a quoted number claims a result (see the module docstring)."""
    if unit in ("%", "s", "min") or decimals > 0:
        return True
    return unit not in ("M", "k") and value >= RESULT_MIN


def _is_calculation(line: str, number: _Number) -> bool:
    before, after = line[:number.start], line[number.end:]
    return bool(_OPERAND_BEFORE.search(before) or _OPERAND_AFTER.match(after)
                or _RESULT_BEFORE.search(before))


def _unmatched(line: str, number: _Number, printed: _Printed) -> bool:
    if _is_calculation(line, number):
        return False
    if not all(_is_result(value, decimals, number.unit) for value, decimals in number.readings):
        return False
    factor = _FACTORS.get(number.unit, Decimal(1))
    return not any(printed.has(value * factor, Decimal(5).scaleb(-decimals - 1) * factor,
                               number.unit == "%")
                   for value, decimals in number.readings)


def _plain(line: str) -> str:
    """A markdown line as read: no emphasis markers, entities and LaTeX spacing resolved."""
    line = html.unescape(line).replace("**", "").replace("__", "")
    line = line.replace("\\%", "%").replace("{,}", ",")
    return re.sub(r"\\[,;: ]", " ", line)


def _snippet(line: str, number: _Number, width: int = 40) -> str:
    """The words around `number` in `line`."""
    start = line.rfind(" ", 0, max(0, number.start - width)) + 1
    end = line.find(" ", number.end + width)
    end = len(line) if end < 0 else end
    return ("…" if start else "") + _norm(line[start:end]) + ("…" if end < len(line) else "")


def _number_findings(title: str, lines: list[str], printed: _Printed) -> list[Finding]:
    findings: dict[str, Finding] = {}
    for line in map(_plain, lines):
        for number in _numbers(line):
            text = _norm(number.text)
            if text not in findings and _unmatched(line, number, printed):
                findings[text] = Finding(
                    title, NUMBER, f"« {text} » n'est dans aucune sortie de vos notebooks / "
                    f"is in no output of your notebooks — « {_snippet(line, number)} »", text)
    return list(findings.values())


# --- the notebooks' outputs -----------------------------------------------------------------

def _output_text(output: dict) -> str:
    if output.get("output_type") == "stream":
        return output.get("text", "")
    data = output.get("data", {})
    page = re.sub(r"<[^>]+>", " ", data.get("text/html", ""))
    return "\n".join((data.get("text/plain", ""), data.get("text/markdown", ""),
                      html.unescape(page)))


def _is_test_cell(cell: dict) -> bool:
    meta = cell.get("metadata", {}).get("nbgrader", {})
    return bool(meta.get("grade")) and not meta.get("solution")


def _notebook_texts(folder: Path) -> tuple[list[str], list[Finding]]:
    """Outputs and non-test code of the six notebooks, and findings about the notebooks."""
    texts: list[str] = []
    problems: dict[str, list[str]] = {}
    for name in NOTEBOOK_NAMES:
        paths = [folder / f"{name}.ipynb", folder / "notebooks" / f"{name}.ipynb"]
        path = next((p for p in paths if p.is_file()), None)
        if path is None:
            problems.setdefault("introuvable / not found", []).append(name)
            continue
        try:
            notebook = nbformat.read(path, as_version=4)
            nbformat.validate(notebook)
        except Exception:  # not JSON, not a valid notebook, bad encoding: all mean unreadable
            problems.setdefault("illisible / unreadable", []).append(name)
            continue
        cells = [c for c in notebook.cells if c.cell_type == "code"]
        outputs = [_output_text(o) for c in cells for o in c.outputs]
        if not outputs:
            problems.setdefault("jamais exécuté / never executed", []).append(name)
        texts += outputs + [c.source for c in cells if not _is_test_cell(c)]
    findings = [Finding(_NOTEBOOKS, NOTEBOOK, f"{problem} : {', '.join(names)} — leurs sorties "
                        "ne peuvent confirmer les nombres du rapport / their outputs cannot back "
                        "the report's numbers")
                for problem, names in problems.items()]
    return texts, findings


# --- the check ------------------------------------------------------------------------------

def _find_report(folder: Path) -> Path | None:
    if not folder.is_dir():
        return None
    return next((p for p in sorted(folder.iterdir())
                 if p.name.casefold() == REPORT_NAME and p.is_file()), None)


def check_report(folder: Path, template: Path = TEMPLATE_PATH) -> ReportCheck:
    """Check FOLDER/rapport.md; a missing report is a finding, never an exception."""
    folder = Path(folder)
    spec = _Template.read(template)
    report = _find_report(folder)
    if report is None:
        missing = f"{REPORT_NAME} introuvable dans / not found in {folder}"
        return ReportCheck(folder, [Finding(REPORT_NAME, MISSING_REPORT, missing)])
    start, parts = _report_parts(_read_markdown(report), spec)
    texts, notebook_findings = _notebook_texts(folder)
    printed = _Printed([*texts, spec.text], GPT2_SIZES)
    findings = _image_findings(start.title, start.lines, folder)
    if any(map(_is_placeholder, start.lines)):
        findings.append(_placeholder_left(start.title))
    for section in spec.parts:
        findings += _section_findings(section, parts.get(section.id), spec, printed, folder)
    findings += _figure_count_findings(spec, [start, *parts.values()])
    return ReportCheck(folder, findings + notebook_findings)


def _section_findings(section: _Part, part: _Part | None, spec: _Template, printed: _Printed,
                      folder: Path) -> list[Finding]:
    """Findings about one template section and the report's part that answers it."""
    findings = []
    if part is not None:
        findings += _answer_findings(section, part, spec)
        findings += _image_findings(section.title, part.lines, folder)
        if section.key.startswith(NUMBER_SECTIONS):
            findings += _number_findings(section.title, spec.answer_lines(part), printed)
    elif any(map(_is_placeholder, section.lines)):
        findings.append(Finding(section.title, MISSING_SECTION,
                                "gardez le titre du modèle et répondez dessous / "
                                "keep the template's heading and answer below it"))
    if HEADER_SECTION in section.key:
        findings += _header_findings(section.title, part)
    return findings


def _figure_count_findings(spec: _Template, report_parts: list[_Part]) -> list[Finding]:
    """The report must link at least as many images as the template does."""
    asked = [p for p in spec.parts if _image_links(p.lines)]
    wanted = sum(len(_image_links(p.lines)) for p in asked)
    linked = sum(len(_image_links(p.lines)) for p in report_parts)
    if linked >= wanted:
        return []
    return [Finding(asked[0].title, IMAGE, f"le modèle demande {wanted} figures, le rapport en "
                    f"insère {linked} / the template asks for {wanted} figures, the report "
                    f"links {linked}")]


def main(argv: list[str] | None = None) -> int:
    """`python -m helpers.report_check PATH`: print the findings; exit 0 (none), 1, or 2."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(prog="python -m helpers.report_check",
                                     description="Check rapport.md before handing it in.")
    parser.add_argument("path", type=Path, nargs="?", default=Path("."),
                        help="folder holding rapport.md, img/ and the notebooks (default: .)")
    args = parser.parse_args(argv)
    if not args.path.is_dir():
        print(f"{args.path} is not a folder: give the folder that holds rapport.md.",
              file=sys.stderr)
        return 2
    check = check_report(args.path)
    print(check.to_markdown())
    return 0 if not check.findings else 1


if __name__ == "__main__":
    raise SystemExit(main())
