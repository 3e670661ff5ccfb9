"""Grading by hand after `grade`: the class gradebook, formgrader, export and feedback.

One grading of two students whose written answers differ (alice also hands in a report with a
figure), manual points and a comment set through nbgrader's own API as formgrader does, then a
regrade after bob changed his code and one answer. Slow: two real gradings.
"""

from __future__ import annotations

import re
import shutil
import sqlite3
import zipfile
from pathlib import Path

import nbformat
import pandas as pd
import pytest
from PIL import Image

from autograder.__main__ import main as cli
from autograder.build.course import ASSIGNMENT, gradebook_url
from autograder.demo.examples import with_written_answers, write_submission
from autograder.grade.table import load_results
from autograder.review.gradebook import manual_cells, read_private_gradebook
from autograder.review.report_rubric import (REPORT_CELL, REPORT_NOTEBOOK, load_rubric,
                                             rubric_markdown)
from helpers.report_check import TEMPLATE_PATH
from browser import Screenshots, chromium, wait_for_text

ANSWERS = {"alice": {f"q{i}": f"Alice's answer to question {i}: rank times width." for i in range(1, 6)},
           "bob": {f"q{i}": f"Bob writes something else for {i}: it depends." for i in range(1, 6)}}
QUESTION_NOTEBOOK = {"q1": "03_lora_injection", "q2": "03_lora_injection",
                     "q3": "04_classification_head", "q4": "05_training", "q5": "05_training"}
MANUAL = {"alice": {"q1": 1, "q2": 0.5, "q3": 1, "q4": 1, "q5": 0, REPORT_CELL: 6},
          "bob": {"q1": 0, "q2": 1, "q4": 1, "q5": 1}}   # bob's q3 not graded yet
COMMENT = "Q1: say why B = 0 keeps the outputs unchanged."
REPORT = ("# Rapport\n\n## En-tête de reproductibilité\n\nAlice's own report, see the curve.\n\n"
          "![Courbe de perte](img/loss_curve.png)\n")


def _notebook(cell: str) -> str:
    return REPORT_NOTEBOOK if cell == REPORT_CELL else QUESTION_NOTEBOOK[cell]


def _gradebook(out: Path):
    from nbgrader.api import Gradebook

    return Gradebook(gradebook_url(out), ASSIGNMENT)


# --- fast ------------------------------------------------------------------------------------

def test_default_rubric_has_one_line_per_template_section():
    sections = re.findall(r"^## (.+)$", TEMPLATE_PATH.read_text(encoding="utf-8"), re.MULTILINE)
    rubric = load_rubric()
    assert [line.section for line in rubric] == sections and len(sections) == 9
    assert "### Rubric (8 points)" in rubric_markdown(rubric)  # the bonus section earns none


def test_a_broken_rubric_gets_a_clear_error(tmp_path):
    bad = tmp_path / "rubric.yaml"
    bad.write_text("- section: Conclusion\n  points: -1\n  criterion: x\n")
    with pytest.raises(ValueError, match="line 1: points must be a number >= 0"):
        load_rubric(bad)
    bad.write_text("section: Conclusion\n")
    with pytest.raises(ValueError, match="expected a list"):
        load_rubric(bad)


def test_report_images_inside_the_submission_become_attachments_and_nothing_else(tmp_path):
    from autograder.review.report_rubric import embed_images

    folder = tmp_path / "alice"
    (folder / "img").mkdir(parents=True)
    Image.new("RGB", (4, 4)).save(folder / "img" / "loss.png")
    (folder / "img" / "fake.png").write_text("not an image")
    (tmp_path / "secret.png").write_bytes((folder / "img" / "loss.png").read_bytes())
    (folder / "img" / "link.png").symlink_to(tmp_path / "secret.png")
    text = ("![a](img/loss.png) ![b](<img/loss.png>) ![c](../secret.png) ![d](img/link.png) "
            "![e](img/fake.png) ![f](https://example.org/x.png) ![g](/etc/x.png)")
    embedded, attachments = embed_images(text, folder)
    assert embedded == ("![a](attachment:img_loss.png) ![b](attachment:img_loss.png) "
                        "![c](../secret.png) ![d](img/link.png) ![e](img/fake.png) "
                        "![f](https://example.org/x.png) ![g](/etc/x.png)")
    assert list(attachments) == ["img_loss.png"] and "image/png" in attachments["img_loss.png"]


def test_grades_table_adds_the_manual_points_of_every_student():
    from autograder.grade.results import GRADED, NotebookResult, StudentResult
    from autograder.grade.table import grades_table
    from autograder.review.gradebook import ManualPoints

    def result(student: str, score: float) -> StudentResult:
        return StudentResult(student, [NotebookResult("03_lora_injection", GRADED, score=score,
                                                      max_score=8, tests={"t": score},
                                                      max_tests={"t": 8})])

    manual = ManualPoints({"alice": {"q1": 1.0, "report_points": 5.0, "q6": 1.0},
                           "bob": {"q1": None, "report_points": 0.0, "q6": None}},
                          {"q1": 1.0, "report_points": 8.0, "q6": 1.0}, frozenset({"q6"}))
    table = grades_table([result("alice", 8), result("bob", 3), result("carol", 0)],
                         manual).set_index("student")
    assert table.loc["alice", ["q1", "report_points", "manual_total", "grand_total"]].tolist() == \
        [1, 5, 6, 14]
    assert pd.isna(table.loc["bob", "q1"]) and table.loc["bob", "grand_total"] == 3
    assert table["manual_points_to_grade"].tolist() == [0, 2, 10]  # carol: not in the gradebook
    assert (table["max_grand_total"] == 8 + 9).all()  # the bonus question is not in the total
    assert table["bonus"].tolist() == [1, 0, 0] and (table["max_bonus"] == 1).all()


# --- slow: two gradings ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def course(tmp_path_factory):
    """Grade alice and bob; return (submissions, OUT, the class gradebook's rows right after)."""
    root = tmp_path_factory.mktemp("formgrader")
    submissions = root / "submissions"
    for student, answers in ANSWERS.items():
        write_submission(with_written_answers(answers), submissions / student)
    (submissions / "bob" / "07_peft.ipynb").unlink()  # bob skips the bonus notebook
    (submissions / "alice" / "img").mkdir()
    Image.new("RGB", (60, 30), "red").save(submissions / "alice" / "img" / "loss_curve.png")
    (submissions / "alice" / "rapport.md").write_text(REPORT, encoding="utf-8")
    out = root / "out"
    assert cli(["grade", str(submissions), "--out", str(out), "--jobs", "1"]) == 0
    rows = {}
    with _gradebook(out) as gb:
        for submission in gb.find_assignment(ASSIGNMENT).submissions:
            for notebook in submission.notebooks:
                for grade in notebook.grades:
                    rows[submission.student.id, notebook.name, grade.name] = (
                        grade.auto_score, grade.needs_manual_grade)
    return submissions, out, rows


@pytest.fixture(scope="module")
def graded_by_hand(course):
    """Manual points and a comment entered as formgrader does, then export and feedback."""
    _, out, _ = course
    with _gradebook(out) as gb:
        for student, points in MANUAL.items():
            for cell, value in points.items():
                grade = gb.find_grade(cell, _notebook(cell), ASSIGNMENT, student)
                grade.manual_score = value
                grade.needs_manual_grade = False
        gb.find_comment("q1", "03_lora_injection", ASSIGNMENT, "bob").manual_comment = COMMENT
        gb.db.commit()
    assert cli(["export", str(out)]) == 0
    table = pd.read_csv(out / "grades.csv").set_index("student")
    assert cli(["feedback", str(out)]) == 0
    return table


@pytest.fixture(scope="module")
def regraded(course, graded_by_hand):
    """bob breaks his LoRA initialisation and rewrites Q2; grade again (alice is unchanged)."""
    submissions, out, _ = course
    for name, old, new in [("01_lora_layer", "torch.zeros(rank, out_dim)", "torch.randn(rank, out_dim)"),
                           ("03_lora_injection", ANSWERS["bob"]["q2"], "Bob's second thoughts.")]:
        path = submissions / "bob" / f"{name}.ipynb"
        text = path.read_text(encoding="utf-8")
        assert old in text
        path.write_text(text.replace(old, new), encoding="utf-8")
    assert cli(["grade", str(submissions), "--out", str(out), "--jobs", "1"]) == 0
    return pd.read_csv(out / "grades.csv").set_index("student")


@pytest.mark.slow
def test_class_gradebook_holds_every_student_as_nbgrader_made_it(course):
    _, out, rows = course
    results = {r.student_id: r for r in load_results(out)}
    assert sorted(results) == ["alice", "bob"]
    for student, result in results.items():
        for nb in result.notebooks:  # autograded scores: the same as the results
            assert {cell: rows[student, nb.name, cell][0] for cell in nb.tests} == nb.tests
        for cell in QUESTION_NOTEBOOK:  # answered: waiting for the instructor
            assert rows[student, QUESTION_NOTEBOOK[cell], cell] == (None, True)
    assert rows["alice", REPORT_NOTEBOOK, REPORT_CELL] == (None, True)
    assert rows["bob", REPORT_NOTEBOOK, REPORT_CELL] == (0.0, False)  # no rapport.md
    assert manual_cells(out) == {"03_lora_injection": ["q1", "q2"],
                                 "04_classification_head": ["q3"],
                                 "05_training": ["q4", "q5"], REPORT_NOTEBOOK: [REPORT_CELL], "07_peft": ["q6"]}
    course_copy = out / "autograded" / "alice" / ASSIGNMENT
    q1 = next(c for c in nbformat.read(course_copy / "03_lora_injection.ipynb", as_version=4).cells
              if c.metadata.get("nbgrader", {}).get("grade_id") == "q1")
    assert q1.source == ANSWERS["alice"]["q1"]
    report = nbformat.read(course_copy / f"{REPORT_NOTEBOOK}.ipynb", as_version=4)
    assert "### Rubric (8 points)" in report.cells[1].source
    assert "report check" in report.cells[2].source  # the check's findings, for the instructor
    assert "](attachment:img_loss_curve.png)" in report.cells[3].source
    assert set(report.cells[3].attachments) == {"img_loss_curve.png"}
    assert (out / "gradebooks" / "alice.db").is_file()
    assert (out / "source" / ASSIGNMENT / f"{REPORT_NOTEBOOK}.ipynb").is_file()


@pytest.mark.slow
def test_a_tampered_private_gradebook_is_refused(course, tmp_path):
    _, out, _ = course
    tampered = tmp_path / "alice.db"
    shutil.copy2(out / "gradebooks" / "alice.db", tampered)
    with sqlite3.connect(tampered) as db:
        db.execute("UPDATE grade SET auto_score = 99")
    from autograder.review.gradebook import _gradebook as open_gradebook, _structure

    with open_gradebook(gradebook_url(out)) as gb:
        structure = _structure(gb)
    assert read_private_gradebook(out / "gradebooks" / "alice.db", "alice", structure)
    with pytest.raises(ValueError, match="score 99.0 outside 0..1"):
        read_private_gradebook(tampered, "alice", structure)


@pytest.mark.slow
def test_export_has_the_points_graded_by_hand(course, graded_by_hand):
    table = graded_by_hand
    alice, bob = table.loc["alice"], table.loc["bob"]
    assert [alice[c] for c in ("q1", "q2", "q3", "q4", "q5", "report_points")] == [1, 0.5, 1, 1, 0, 6]
    assert pd.isna(bob["q3"]) and bob["report_points"] == 0  # not graded yet; no report
    assert alice["manual_total"] == 9.5 and bob["manual_total"] == 3
    assert (alice["manual_points_to_grade"], bob["manual_points_to_grade"]) == (0, 1)
    assert (table["max_manual_total"] == 5 + 8).all()  # Q6 is in the bonus
    assert (alice["q6"], alice["bonus"], alice["max_bonus"]) == (0, 6, 7)  # Q6 left unanswered
    assert (bob["q6"], bob["bonus"], bob["max_bonus"]) == (0, 0, 7)  # no notebook 07
    assert (table["grand_total"] == table["total"] + table["manual_total"]).all()
    assert (table["max_grand_total"] == table["max_total"] + 13).all()
    assert alice["total"] == alice["max_total"]  # the complete solution


@pytest.mark.slow
def test_feedback_carries_the_instructors_points_and_comments(course, graded_by_hand):
    _, out, _ = course
    page = (out / "feedback" / "bob" / "03_lora_injection.html").read_text(encoding="utf-8")
    assert COMMENT in page
    report = (out / "feedback" / "alice" / "rapport.html").read_text(encoding="utf-8")
    assert "Alice's own report" in report and "data:image/png;base64," in report
    assert not (out / "feedback" / "alice" / ASSIGNMENT).exists()
    with zipfile.ZipFile(out / "feedback_zips" / "bob.zip") as archive:
        assert "03_lora_injection.html" in archive.namelist()


@pytest.mark.slow
def test_regrade_replaces_autograded_points_and_keeps_manual_ones(graded_by_hand, regraded):
    before, after = graded_by_hand, regraded
    assert before.loc["bob", "01_lora_layer"] == 6 and after.loc["bob", "01_lora_layer"] < 6
    assert after.loc["bob", "total"] == before.loc["bob", "total"] - (6 - after.loc["bob", "01_lora_layer"])
    manual = ["q1", "q2", "q3", "q4", "q5", "report_points"]
    assert after.loc["alice", manual].tolist() == before.loc["alice", manual].tolist()
    assert after.loc["alice", "total"] == before.loc["alice", "total"]
    assert [after.loc["bob", c] for c in ("q1", "q4", "q5")] == [0, 1, 1]  # answers unchanged
    assert pd.isna(after.loc["bob", "q2"])  # bob rewrote Q2: to grade again
    assert after.loc["bob", "manual_points_to_grade"] == 2


@pytest.mark.slow
def test_regrade_keeps_comments_and_refreshes_the_class_copy(course, regraded):
    _, out, _ = course
    with _gradebook(out) as gb:
        assert gb.find_comment("q1", "03_lora_injection", ASSIGNMENT, "bob").manual_comment == COMMENT
        grades = gb.find_submission_notebook("01_lora_layer", ASSIGNMENT, "bob").grades
        assert sum(g.auto_score for g in grades) == regraded.loc["bob", "01_lora_layer"]
        assert {g.name: g.auto_score for g in grades}["test_lora_layer_zero_at_init"] == 0
        assert not any(g.needs_manual_grade for g in grades)
        assert gb.find_grade("q2", "03_lora_injection", ASSIGNMENT, "bob").needs_manual_grade
    text = (out / "autograded" / "bob" / ASSIGNMENT / "03_lora_injection.ipynb").read_text()
    assert "Bob's second thoughts." in text


@pytest.mark.slow
def test_formgrader_shows_every_students_answer_to_q1(course, tmp_path):
    from autograder.review.formgrader import start_formgrader

    _, out, _ = course
    with chromium(tmp_path / "profile") as driver:
        screenshots = Screenshots(driver, tmp_path / "screenshots")
        with open(tmp_path / "jupyter.log", "w") as log:
            server = start_formgrader(out, log=log)
        try:
            driver.get(server.url(f"/formgrader/gradebook/{ASSIGNMENT}"))  # "Manual grading"
            for notebook in ("03_lora_injection", "04_classification_head", "05_training",
                             REPORT_NOTEBOOK):
                wait_for_text(driver, notebook)
            screenshots.take("manual_grading")
            driver.get(server.url(f"/formgrader/gradebook/{ASSIGNMENT}/03_lora_injection"))
            wait_for_text(driver, "Submission #2")
            driver.find_element("id", "toggle_names").click()
            wait_for_text(driver, "alice")
            wait_for_text(driver, "bob")
            screenshots.take("q1_submissions")
            links = sorted({a.get_attribute("href") for a in driver.find_elements(
                "css selector", "a[href*='/formgrader/submissions/']")})
            assert len(links) == 2
            seen = set()
            for link in links:
                driver.get(link)
                wait_for_text(driver, "Student's answer")
                page = driver.find_element("tag name", "body").text
                seen |= {s for s in ANSWERS if ANSWERS[s]["q1"] in page}
                screenshots.take(f"q1_submission_{len(seen)}")
            assert seen == {"alice", "bob"}
            driver.get(server.url("/lab"))  # the instructor's JupyterLab keeps nbgrader's menu
            wait_for_text(driver, "Nbgrader")
            screenshots.take("jupyterlab")
        finally:
            server.stop()
