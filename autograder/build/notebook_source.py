"""Build nbgrader master notebooks from their reviewable markdown sources.

A master source (`autograder/masters/NN_name.md`) is markdown. Text becomes markdown cells;
fenced blocks become cells, their info string says which kind:

    ```python                                   an ordinary code cell
    ```python setup                             locked code cell (imports, data, helpers)
    ```python solution id=lora_layer            exercise cell (### BEGIN/END SOLUTION inside)
    ```python test id=test_shapes points=2      locked, graded test cell
    ```markdown answer id=q1 points=1           a written answer, graded by hand
    ```markdown                                 a markdown cell of its own (splits text)

Any block also takes `tags=a,b` (cell tags: `carry` marks cells that later notebooks re-run,
`training` gets the long timeout when grading). In code, `{{ solutions.NAME }}` is replaced by
the source of `autograder.solutions.NAME`, so reference code and masters never drift apart.
Each exercise cell gets a markdown banner before it naming what the student must define.
"""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import nbformat

from helpers.notebook_format import set_lab_metadata
from helpers.paths import ALL_NOTEBOOKS, BONUS_NOTEBOOKS

MASTERS_DIR = Path(__file__).resolve().parents[1] / "masters"
NOTEBOOK_NAMES = ALL_NOTEBOOKS  # built, released and graded; BONUS_NOTEBOOKS count apart
_FENCE = re.compile(r"^```(\w+)[ \t]*(.*)$")
_SUBSTITUTION = re.compile(r"\{\{\s*solutions\.(\w+)\s*\}\}")
_KINDS = {"", "setup", "solution", "test", "answer"}


def _solution_source(match: re.Match) -> str:
    from autograder import solutions  # imports torch: not for a grading worker's NOTEBOOK_NAMES

    name = match.group(1)
    if not hasattr(solutions, name):
        raise ValueError(f"autograder.solutions has no {name!r}")
    return inspect.getsource(getattr(solutions, name)).rstrip("\n")


def _parse_info(info: str, where: str) -> tuple[str, dict[str, str]]:
    words = info.split()
    kind = words[0] if words and "=" not in words[0] else ""
    attrs = dict(w.split("=", 1) for w in words[1 if kind else 0:])
    if kind not in _KINDS:
        raise ValueError(f"{where}: unknown cell kind {kind!r}")
    if kind in ("solution", "test", "answer") and "id" not in attrs:
        raise ValueError(f"{where}: a {kind} cell needs an id=")
    if kind in ("test", "answer") and "points" not in attrs:
        raise ValueError(f"{where}: a {kind} cell needs points=")
    return kind, attrs


def _points(attrs: dict[str, str]) -> int | float:
    """The cell's points; whole numbers as int, as JupyterLab writes them back."""
    points = float(attrs["points"])
    return int(points) if points.is_integer() else points


def _nbgrader_metadata(kind: str, attrs: dict[str, str]) -> dict | None:
    base = {"schema_version": 3, "task": False}
    if kind == "solution":
        return {**base, "grade": False, "solution": True, "locked": False, "grade_id": attrs["id"]}
    if kind == "test":
        return {**base, "grade": True, "solution": False, "locked": True,
                "grade_id": attrs["id"], "points": _points(attrs)}
    if kind == "answer":
        return {**base, "grade": True, "solution": True, "locked": False,
                "grade_id": attrs["id"], "points": _points(attrs)}
    if kind == "setup":
        return {**base, "grade": False, "solution": False, "locked": True,
                "grade_id": attrs.get("id", "")}
    return None


def _make_cell(lang: str, kind: str, attrs: dict[str, str], text: str):
    if lang == "markdown":
        cell = nbformat.v4.new_markdown_cell(text)
    else:
        cell = nbformat.v4.new_code_cell(_SUBSTITUTION.sub(_solution_source, text))
    meta = _nbgrader_metadata(kind, attrs)
    if meta is not None:
        cell.metadata["nbgrader"] = meta
    if "tags" in attrs:
        cell.metadata["tags"] = attrs["tags"].split(",")
    return cell


def parse_master(text: str, name: str = "<master>") -> nbformat.NotebookNode:
    """The nbgrader master notebook described by a markdown source."""
    nb = set_lab_metadata(nbformat.v4.new_notebook())
    prose: list[str] = []
    lines = text.splitlines()
    i = 0

    def flush_prose() -> None:
        body = "\n".join(prose).strip("\n")
        if body.strip():
            nb.cells.append(nbformat.v4.new_markdown_cell(body))
        prose.clear()

    while i < len(lines):
        fence = _FENCE.match(lines[i])
        if not fence:
            prose.append(lines[i])
            i += 1
            continue
        where = f"{name}:{i + 1}"
        lang, (kind, attrs) = fence.group(1), _parse_info(fence.group(2), where)
        end = next((j for j in range(i + 1, len(lines)) if lines[j] == "```"), None)
        if end is None:
            raise ValueError(f"{where}: code block never closed")
        flush_prose()
        nb.cells.append(_make_cell(lang, kind, attrs, "\n".join(lines[i + 1:end])))
        i = end + 1
    flush_prose()
    _check_unique_ids(nb, name)
    for index, cell in enumerate(nb.cells):  # stable ids: a rebuild gives identical files
        cell.id = cell.metadata.get("nbgrader", {}).get("grade_id") or f"cell-{index:02d}"
    _add_exercise_banners(nb, name)
    return nb


def defined_names(source: str) -> list[str]:
    """The top-level names a code cell defines (classes, functions, assignments), in order."""
    names = []
    for node in ast.parse(source).body:
        if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            names.append(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names += [target.id for target in targets if isinstance(target, ast.Name)]
    return list(dict.fromkeys(names))


def exercise_banner(names: list[str]) -> str:
    """The markdown shown above an exercise cell that must define `names`."""
    listed = [f"`{n}`" for n in names]
    what = listed[0] if len(listed) == 1 else ", ".join(listed[:-1]) + " and " + listed[-1]
    return (f"> ✏️ **Exercise — the next cell is yours:** define {what} "
            "(replace `raise NotImplementedError()` with your code).")


def _add_exercise_banners(nb: nbformat.NotebookNode, name: str) -> None:
    for index in reversed(range(len(nb.cells))):
        cell = nb.cells[index]
        if cell.cell_type != "code" or not cell.metadata.get("nbgrader", {}).get("solution"):
            continue
        names = defined_names(cell.source)
        if not names:
            raise ValueError(f"{name}: exercise cell {cell.id!r} defines no name to announce")
        banner = nbformat.v4.new_markdown_cell(exercise_banner(names))
        banner.id = f"{cell.id}-exercise"
        nb.cells.insert(index, banner)


def _check_unique_ids(nb: nbformat.NotebookNode, name: str) -> None:
    ids = [c.metadata["nbgrader"]["grade_id"] for c in nb.cells
           if c.metadata.get("nbgrader", {}).get("grade_id")]
    duplicates = {i for i in ids if ids.count(i) > 1}
    if duplicates:
        raise ValueError(f"{name}: duplicate grade ids {sorted(duplicates)}")


def load_master(name: str) -> nbformat.NotebookNode:
    """The master notebook `name` (e.g. '01_lora_layer') built from its markdown source."""
    source = MASTERS_DIR / f"{name}.md"
    return parse_master(source.read_text(encoding="utf-8"), source.name)


def build_masters(dest: Path, names: tuple[str, ...] = NOTEBOOK_NAMES) -> list[Path]:
    """Write the master notebooks (with solutions and hidden tests) into `dest`."""
    dest.mkdir(parents=True, exist_ok=True)
    written = []
    for name in names:
        path = dest / f"{name}.ipynb"
        nbformat.write(load_master(name), path)
        written.append(path)
    return written
