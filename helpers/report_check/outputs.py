"""Reading the executed notebooks of a submission: the text of their outputs and code.

Every cell output counts (stream text, text/plain, text/markdown, text/html without tags), and
the code of non-test cells (hyperparameters such as `lr=5e-4`); not the notebooks' markdown,
which states the expected results. A notebook missing, unreadable or never executed is a
finding, except a bonus notebook that was not handed in.
"""

from __future__ import annotations

import html
import re
from pathlib import Path

import nbformat

from helpers.paths import ALL_NOTEBOOKS, BONUS_NOTEBOOKS
from helpers.report_check.findings import NOTEBOOK, Finding

NOTEBOOKS_SECTION = "notebooks"


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


def notebook_texts(folder: Path) -> tuple[list[str], list[Finding]]:
    """Outputs and non-test code of the notebooks, and findings about the notebooks."""
    texts: list[str] = []
    problems: dict[str, list[str]] = {}
    for name in ALL_NOTEBOOKS:
        paths = [folder / f"{name}.ipynb", folder / "notebooks" / f"{name}.ipynb"]
        path = next((p for p in paths if p.is_file()), None)
        if path is None and name in BONUS_NOTEBOOKS:
            continue
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
    findings = [Finding(NOTEBOOKS_SECTION, NOTEBOOK, f"{problem} : {', '.join(names)} — leurs "
                        "sorties ne peuvent confirmer les nombres du rapport / their outputs "
                        "cannot back the report's numbers")
                for problem, names in problems.items()]
    return texts, findings
