"""The six lab notebooks: masters run clean in grading mode, the release is current, holds no
solution and no hidden test, and its exercises fail as stubs until students fill them."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from autograder import solutions
from autograder.build.course import RELEASE_DIR, stale_release_notebooks
from autograder.build.notebook_source import NOTEBOOK_NAMES, build_masters, load_master
from autograder.grade.environment import student_environment

pytestmark = pytest.mark.slow


def _run(folder: Path, name: str, env_dir: Path, monkeypatch) -> nbformat.NotebookNode:
    for name_, value in student_environment(env_dir).items():
        monkeypatch.setenv(name_, value)
    nb = nbformat.read(folder / f"{name}.ipynb", as_version=4)
    NotebookClient(nb, timeout=300, allow_errors=True, kernel_name="python3",
                   resources={"metadata": {"path": str(folder)}}).execute()
    return nb


def _errors(nb) -> list[tuple[str, str]]:
    found = []
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            if output.output_type == "error":
                label = cell.metadata.get("nbgrader", {}).get("grade_id") or cell.source[:40]
                found.append((label, f"{output.ename}: {output.evalue}"))
    return found


def _text(nb) -> str:
    return "\n".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []))


@pytest.fixture(scope="module")
def executed_masters(tmp_path_factory):
    folder = tmp_path_factory.mktemp("masters")
    build_masters(folder)
    env_dir = tmp_path_factory.mktemp("env")
    with pytest.MonkeyPatch.context() as mp:
        return {name: _run(folder, name, env_dir, mp) for name in NOTEBOOK_NAMES}


@pytest.mark.parametrize("name", NOTEBOOK_NAMES)
def test_master_runs_without_error_in_grading_mode(executed_masters, name):
    assert _errors(executed_masters[name]) == []


def test_injection_and_head_counts_are_printed_exactly(executed_masters):
    assert ("trainable params: 1,327,104 || all params: 164,364,288 || trainable%: 0.8074"
            in _text(executed_masters["03_lora_injection"]))
    assert ("trainable params: 1,328,642 || all params: 125,768,450 || trainable%: 1.0564"
            in _text(executed_masters["04_classification_head"]))


def test_training_notebook_writes_the_report_plots(executed_masters, tmp_path_factory):
    text = _text(executed_masters["05_training"])
    assert "loss_curve.png" in text and "accuracy_curve.png" in text


def test_inference_notebook_merged_answers_equal_the_lora_layers(executed_masters):
    text = _text(executed_masters["06_inference"])
    merged = re.search(r"(\d+) LoRA layers merged", text)
    assert merged and int(merged.group(1)) > 0, "the merged-inference cell merged nothing"
    rows = re.findall(r"merged +(\w+) ([\d.]+)% \| LoRA layers +(\w+) ([\d.]+)%", text)
    assert len(rows) == 4
    for merged_label, merged_p, label, p in rows:
        assert merged_label == label and abs(float(merged_p) - float(p)) < 1e-3


def test_release_is_current():
    assert stale_release_notebooks() == [], "run `python -m autograder release` and commit notebooks/"


# Lines any training or inference code has: not a sign of a leaked solution on their own.
GENERIC_LINES = {"model.eval()", "with torch.no_grad():", "loss.backward()", "optimizer.step()",
                 "return loss.item()", "return model",
                 "context_length = model.pos_emb.weight.shape[0]",
                 "max_length = context_length if max_length is None else min(max_length, context_length)"}


def _solution_fragments() -> set[tuple[str, ...]]:
    """Each solution block as pairs of consecutive lines (the line itself if it is alone),
    leaving out pairs made only of generic lines."""
    source = inspect.getsource(solutions)
    fragments = set()
    for block in re.findall(r"### BEGIN SOLUTION\n(.*?)### END SOLUTION", source, flags=re.S):
        lines = [ln.strip() for ln in block.splitlines() if ln.strip() and not ln.strip().startswith("#")]
        fragments |= set(zip(lines, lines[1:])) if len(lines) > 1 else {tuple(lines)}
    return {f for f in fragments if not set(f) <= GENERIC_LINES}


def _leaked(code: str) -> list[tuple[str, ...]]:
    lines = [ln.strip() for ln in code.splitlines() if ln.strip()]
    present = set(lines) | set(zip(lines, lines[1:]))
    return [f for f in _solution_fragments() if (f[0] if len(f) == 1 else f) in present]


@pytest.mark.parametrize("name", NOTEBOOK_NAMES)
def test_release_has_no_solution_and_no_hidden_test(name):
    nb = nbformat.read(RELEASE_DIR / f"{name}.ipynb", as_version=4)
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    for marker in ("BEGIN SOLUTION", "END SOLUTION", "HIDDEN TESTS", "autograder"):
        assert marker not in code
    assert _leaked(code) == []
    stubs = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("solution")
             and c.cell_type == "code"]
    assert stubs and all("raise NotImplementedError()" in c.source for c in stubs)


def test_masters_have_stable_documented_ids():
    for name in NOTEBOOK_NAMES:
        nb = load_master(name)
        ids = [c.metadata["nbgrader"]["grade_id"] for c in nb.cells if "nbgrader" in c.metadata]
        assert len(ids) == len(set(ids))
        assert any(c.metadata["nbgrader"].get("solution") for c in nb.cells if "nbgrader" in c.metadata)


def test_release_exercises_fail_as_stubs(tmp_path, monkeypatch):
    """Every visible test of the untouched release fails, starting from NotImplementedError."""
    folder = tmp_path / "release"
    folder.mkdir()
    for name in NOTEBOOK_NAMES:
        (folder / f"{name}.ipynb").write_bytes((RELEASE_DIR / f"{name}.ipynb").read_bytes())
    for name in NOTEBOOK_NAMES:
        nb = _run(folder, name, tmp_path, monkeypatch)
        visible_tests = [c.metadata["nbgrader"]["grade_id"] for c in nb.cells
                         if c.metadata.get("nbgrader", {}).get("grade") and c.cell_type == "code"
                         and not c.source.lstrip().startswith("#")]
        errors = _errors(nb)
        failed = {label for label, _ in errors}
        assert visible_tests and set(visible_tests) <= failed, name
        assert any("NotImplementedError" in err for _, err in errors), name


def test_student_pack_has_release_and_helpers_but_no_solutions(tmp_path):
    import zipfile

    from autograder.build.student_pack import build_student_pack

    with zipfile.ZipFile(build_student_pack(tmp_path)) as archive:
        names = archive.namelist()
        assert not [n for n in names if "/autograder/" in n]
        for name in NOTEBOOK_NAMES:
            shipped = archive.read(f"lora-lab/notebooks/{name}.ipynb")
            assert shipped == (RELEASE_DIR / f"{name}.ipynb").read_bytes()
        code = "\n".join(archive.read(n).decode() for n in names if n.endswith(".py"))
        code += "\n".join(c.source for n in names if n.endswith(".ipynb")
                          for c in nbformat.reads(archive.read(n).decode(), as_version=4).cells)
        assert 'include = ["helpers*"]' in archive.read("lora-lab/pyproject.toml").decode()
        readme = archive.read("lora-lab/README.md").decode()
        assert "notebooks/01_lora_layer.ipynb" in readme and "helpers.report_check" in readme
    assert _leaked(code) == []
    assert "lora-lab/helpers/gpt.py" in names and "lora-lab/rapport_template.md" in names
