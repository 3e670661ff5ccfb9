"""A report check as text: markdown (what the CLI prints) and an HTML page (the feedback)."""

from __future__ import annotations

import html
from typing import TYPE_CHECKING

from helpers.report_check.findings import LABELS, REPORT_NAME, Finding

if TYPE_CHECKING:
    from helpers.report_check.check import ReportCheck

NUMBER_HINT = ("Les nombres cités doivent apparaître dans les sorties de vos notebooks : "
               "citez-les tels qu'affichés, écrivez les autres sous forme de calcul. / "
               "Quoted numbers must appear in your notebooks' outputs: quote them as printed, "
               "write other quantities as a calculation.")


def _by_section(findings: list[Finding]) -> list[tuple[str, list[Finding]]]:
    groups: dict[str, list[Finding]] = {}
    for finding in findings:
        groups.setdefault(finding.section, []).append(finding)
    return list(groups.items())


def _overview(check: ReportCheck) -> list[str]:
    complete = "oui / yes" if check.complete else "non / no"
    return [f"Rapport complet / report complete: {complete}",
            f"Points à corriger / findings: {len(check.findings)}",
            f"Nombres absents des sorties / numbers in no output: "
            f"{len(check.unmatched_numbers)}"]


def to_markdown(check: ReportCheck, instructor: bool = False) -> str:
    """What to fix, as markdown; `instructor` adds the numbers derived from the outputs."""
    lines = [f"# Vérification de {REPORT_NAME} / report check", ""]
    lines += [f"- {item}" for item in _overview(check)]
    if not check.findings:
        lines += ["", "Rien à corriger. / Nothing to fix."]
    for section, findings in _by_section(check.findings):
        lines += ["", f"## {section}", ""]
        lines += [f"- **{LABELS[f.kind]}** : {f.detail}" for f in findings]
    if check.unmatched_numbers:
        lines += ["", NUMBER_HINT]
    if instructor and check.derived:
        lines += ["", "## Nombres dérivés des sorties / numbers derived from the outputs", ""]
        lines += [f"- {d.section} : {d.describe()}" for d in check.derived]
    return "\n".join(lines) + "\n"


def to_html(check: ReportCheck) -> str:
    """What to fix, as a standalone HTML page."""
    e = html.escape
    parts = ["<!DOCTYPE html>", '<html><head><meta charset="utf-8">',
             f"<title>{e(REPORT_NAME)}</title></head><body>",
             f"<h1>Vérification de {e(REPORT_NAME)} / report check</h1>", "<ul>"]
    parts += [f"<li>{e(item)}</li>" for item in _overview(check)]
    parts.append("</ul>")
    if not check.findings:
        parts.append("<p>Rien à corriger. / Nothing to fix.</p>")
    for section, findings in _by_section(check.findings):
        parts += [f"<h2>{e(section)}</h2>", "<ul>"]
        parts += [f"<li><strong>{e(LABELS[f.kind])}</strong> : {e(f.detail)}</li>"
                  for f in findings]
        parts.append("</ul>")
    if check.unmatched_numbers:
        parts.append(f"<p>{e(NUMBER_HINT)}</p>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
