"""The check of one submission's report: every finding, in the report's order.

A report is *complete* when its only findings, if any, are `number` and `notebook` ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from helpers.paths import REPO_ROOT
from helpers.report_check import render
from helpers.report_check.facts import read_history
from helpers.report_check.findings import (HEADER, IMAGE, INCOMPLETE, MISSING_REPORT,
                                           MISSING_SECTION, NUMBER, REPORT_NAME, Derived,
                                           Finding)
from helpers.report_check.images import figure_count_findings, image_findings
from helpers.report_check.matching import Outputs, number_findings
from helpers.report_check.outputs import notebook_texts
from helpers.report_check.sections import (HEADER_SECTION, OPTIONAL_MARK, Part, Template,
                                           answer_findings, header_findings, is_placeholder,
                                           placeholder_left, read_markdown, report_parts)

TEMPLATE_PATH = REPO_ROOT / "rapport_template.md"
NUMBER_SECTIONS = ("q2", "q3", "q4", "q5", "6. inférence", "7. bonus")  # start of the section keys
# Sizes of GPT-2 small that answers derive by hand: vocabulary, token embedding (= old head),
# position embedding, one transformer block, LoRA parameters of one block at rank 8.
GPT2_SIZES = (50_257, 38_597_376, 786_432, 7_087_872, 110_592)


@dataclass
class ReportCheck:
    """Every finding about one submission's report, in the report's order, and the numbers
    that only values derived from the outputs back (`derived`, for the instructor)."""

    folder: Path
    findings: list[Finding] = field(default_factory=list)
    derived: list[Derived] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        """Report present, every section answered, header filled, figures present."""
        return not any(f.kind in INCOMPLETE for f in self.findings)

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

    def to_markdown(self, instructor: bool = False) -> str:
        """What to fix, as markdown (what the CLI prints); `instructor` adds the derived
        numbers."""
        return render.to_markdown(self, instructor)

    def to_html(self) -> str:
        """What to fix, as a standalone HTML page for the student's feedback."""
        return render.to_html(self)


def _find_report(folder: Path) -> Path | None:
    if not folder.is_dir():
        return None
    return next((p for p in sorted(folder.iterdir())
                 if p.name.casefold() == REPORT_NAME and p.is_file()), None)


def check_report(folder: Path, template: Path = TEMPLATE_PATH) -> ReportCheck:
    """Check FOLDER/rapport.md; a missing report is a finding, never an exception."""
    folder = Path(folder)
    spec = Template.read(template)
    report = _find_report(folder)
    if report is None:
        missing = f"{REPORT_NAME} introuvable dans / not found in {folder}"
        return ReportCheck(folder, [Finding(REPORT_NAME, MISSING_REPORT, missing)])
    start, parts = report_parts(read_markdown(report), spec)
    texts, notebook_findings = notebook_texts(folder)
    outputs = Outputs.read(texts, [spec.text], GPT2_SIZES, read_history(folder))
    check = ReportCheck(folder, image_findings(start.title, start.lines, folder))
    if any(map(is_placeholder, start.lines)):
        check.findings.append(placeholder_left(start.title))
    for section in spec.parts:
        _check_section(check, section, parts.get(section.id), spec, outputs)
    check.findings += figure_count_findings(spec, [start, *parts.values()])
    check.findings += notebook_findings
    return check


def _check_section(check: ReportCheck, section: Part, part: Part | None, spec: Template,
                   outputs: Outputs) -> None:
    """Add the findings about one template section and the report's part that answers it."""
    findings = check.findings
    if part is not None:
        findings += answer_findings(section, part, spec)
        findings += image_findings(section.title, part.lines, check.folder)
        if section.key.startswith(NUMBER_SECTIONS):
            unmatched, derived = number_findings(section.title, spec.answer_lines(part), outputs)
            findings += unmatched
            check.derived += derived
    elif any(map(is_placeholder, section.lines)) and OPTIONAL_MARK not in section.title.lower():
        findings.append(Finding(section.title, MISSING_SECTION,
                                "gardez le titre du modèle et répondez dessous / "
                                "keep the template's heading and answer below it"))
    if HEADER_SECTION in section.key:
        findings += header_findings(section.title, part)
