"""The kinds of finding the report check makes, and the finding itself.

- `missing report`, `missing section`: no rapport.md; a template heading or `**Qn.**` label not
  found in the report (a numbered heading may be reworded if its number and level are kept);
- `no answer`, `template text`: a section whose template holds `*À compléter.*` has no line of
  the student's own (lines identical to template lines don't count), or the placeholder is left;
- `header`: the reproducibility table lacks OS, Python, torch (with versions) or an integer Seed;
- `image`: a linked image that is a URL, an absolute path, outside the folder, missing (letter
  case counts), or not a readable PNG/JPEG; or fewer figures than the template links;
- `number`: a number quoted in Q2-Q5 or section 6 that the notebooks' outputs do not back;
- `notebook`: a notebook missing, unreadable or never executed.

A number that only a value derived from the outputs backs is no finding: it is a `Derived`
note, for the instructor.
"""

from __future__ import annotations

from dataclasses import dataclass

REPORT_NAME = "rapport.md"

MISSING_REPORT = "missing report"
MISSING_SECTION = "missing section"
NO_ANSWER = "no answer"
TEMPLATE_TEXT = "template text"
HEADER = "header"
IMAGE = "image"
NUMBER = "number"
NOTEBOOK = "notebook"
INCOMPLETE = (MISSING_REPORT, MISSING_SECTION, NO_ANSWER, TEMPLATE_TEXT, HEADER, IMAGE)
LABELS = {
    MISSING_REPORT: "rapport absent / report missing",
    MISSING_SECTION: "section absente / section missing",
    NO_ANSWER: "réponse manquante / no answer",
    TEMPLATE_TEXT: "texte du modèle / template text",
    HEADER: "en-tête / header",
    IMAGE: "figure / image",
    NUMBER: "nombre / number",
    NOTEBOOK: "notebook",
}


@dataclass(frozen=True)
class Finding:
    """One thing to fix in the report; `value` is the number or image link concerned."""

    section: str
    kind: str
    detail: str
    value: str = ""


@dataclass(frozen=True)
class Derived:
    """A quoted number that a combination of outputs backs, not a printed one."""

    section: str
    value: str                     # as quoted
    sources: tuple[str, ...]       # the printed numbers (or the history file) it comes from
    how: str

    def describe(self) -> str:
        return (f"« {self.value} » dérivé de / derived from {' and '.join(self.sources)} "
                f"({self.how})")
