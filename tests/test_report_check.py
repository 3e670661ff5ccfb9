"""The report checker: rapport.md against the template and the student's own notebook outputs.

Submissions are built here from small notebooks whose outputs are the lines the masters print in
a grading-mode run (made with the pack's own formatting functions where there is one)."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import nbformat
import pytest
from PIL import Image

from autograder.__main__ import main as cli
from autograder.demo.hand_in import fill_report_template
from helpers.paths import LAB_NOTEBOOKS as NOTEBOOK_NAMES  # the bonus notebook 07 is left out
from helpers.report_check import (HEADER, IMAGE, MISSING_REPORT, MISSING_SECTION, NO_ANSWER,
                                     NOTEBOOK, NUMBER, TEMPLATE_TEXT, check_report)
from helpers.env_info import environment_report
from helpers.params import trainable_parameters_line
from helpers.sanity import InitialLossReport

ENV_TABLE = environment_report(seed=123, device="cpu")


def _params_line(trainable: int, total: int) -> str:
    """helpers.params' line for a model with these counts (a stand-in for GPT-2's 164M)."""
    params = [SimpleNamespace(numel=lambda: trainable, requires_grad=True),
              SimpleNamespace(numel=lambda: total - trainable, requires_grad=False)]
    return trainable_parameters_line(SimpleNamespace(parameters=lambda: iter(params)))


def _initial_loss(loss: float) -> str:
    expected = math.log(2)
    message = "The fresh model predicts every class about equally, as it should."
    return str(InitialLossReport(loss, expected, abs(loss - expected),
                                 abs(loss - expected) / expected, True, message, 2, 0.1))


TEST_CELL = {"nbgrader": {"grade": True, "solution": False, "locked": True, "grade_id": "t"}}

# notebook -> (code, printed output, is a test cell)
OUTPUTS = {
    "01_lora_layer": [("layer = LoRALayer(768, 768, rank=8, alpha=16)", "shapes OK\n", True)],
    "02_lora_wrapper": [("wrapped = LinearWithLoRA(nn.Linear(4, 3), rank=2, alpha=4)",
                         "equals the wrapped layer at init: OK\n", True)],
    "03_lora_injection": [
        ("print_trainable_parameters(model)", _params_line(163_037_184, 163_037_184) + "\n", False),
        ("replace_linear_with_lora(model, rank=8, alpha=16)\nfreeze_and_activate_lora(model)",
         _params_line(1_327_104, 164_364_288) + "\n", False),
        ("assert trainable == 1_327_104",
         "72 layers wrapped, 1,327,104 trainable of 164,364,288: OK\n", True),
    ],
    "04_classification_head": [
        ("add_classification_head(model, num_classes=2)",
         "Linear(in_features=768, out_features=2, bias=True)\n"
         + _params_line(1_328_642, 125_768_450) + "\n", False),
        ("print(initial_loss_check(model, batch, num_classes=2))",
         _initial_loss(0.6974) + "\n", False),
    ],
    "05_training": [
        ("optimizer = make_optimizer(model, lr=5e-4, weight_decay=0.1)",
         "epoch 1: 41.7 s, train acc 71.25%, validation acc 68.75%\n", False),
        ("print(f'test accuracy: {test_accuracy:.2%}')",
         ("train accuracy (end of training, eval mode): 71.25%\nvalidation accuracy: 68.75%\n"
          "test accuracy: 65.62%\n"), False),
        ("print(environment_report(seed=SEED, device=device))", ENV_TABLE + "\n", False),
    ],
    "06_inference": [
        ("classify_text(text, model, tokenizer, device, MAX_LENGTH)",
         ("spam  54.1%  You are a winner you have been specially selected to receive $1000\n"
          " ham  51.3%  Hey, just wanted to check if we're still on for dinner tonight?\n"), False),
        ("print(classify_text(text, model, tokenizer, device, MAX_LENGTH), text)",
         "('ham', 0.5234117507934570) Your parcel is waiting, confirm your address here\n", False),
    ],
}

Q2 = ("Après `freeze_and_activate_lora`, **1 327 104** paramètres sont entraînables sur "
      "164 364 288 au total, soit 0,81 %. À la main, avec le rang 8 : 4 × 8 × (768 + 768) + "
      "2 × 8 × (768 + 3072) = 110 592 par bloc, et 12 × 110 592 = 1 327 104 (72 couches).\n\n"
      "```\ntrainable params: 1,327,104 || all params: 164,364,288 || trainable%: 0.8074\n```")
Q3 = ("Avec la tête : 1,328,642 paramètres entraînables sur 125,768,450 (1.06%). Le total a "
      "diminué : la tête de 50 257 sorties (38 597 376 paramètres) devient une tête à 2 classes "
      "(768 × 2 + 2 = 1 538 paramètres). Perte initiale 0,6974 ; log(2) = 0,6931.")
Q4 = ("La perte par batch baisse vite puis devient bruitée (batchs de 8 messages). Précisions : "
      "entraînement 71,25 %, validation 68,75 %, test 65,62 %. Une époque dure 41,7 s sur mon CPU.")
Q5 = ("Le test (65.6 %) est plus bas que l'entraînement (71.3 %) : les mesures sont faites en "
      "mode évaluation après l'entraînement, l'écart vient du modèle qui a vu ces messages.")
SECTION_6_TITLE = "6. Inférence (`06_inference`)"
SECTION_6 = ("« You are a winner… » : spam à 54,1 % ; « Hey, just wanted… » : ham à 51,3 %. "
             "Mon message « Your parcel is waiting » est classé ham (0,52) : une erreur, le "
             "modèle n'a vu que 1045 messages.")
ANSWERS = ["Dupont, Jeanne", "21901234", ENV_TABLE,
           "`B` nul donne une sortie nulle au départ ; `alpha / rank` règle l'échelle.",
           "Le wrapper doit partager les poids d'origine : une copie doublerait la mémoire.",
           "Les `nn.Linear` deviennent des `LinearWithLoRA` ; B = 0 : mêmes sorties.",
           Q2, Q3, Q4, Q5, SECTION_6, "Non traité.",
           "LoRA entraîne moins de 1 % des paramètres ; limite : le temps d'une époque sur CPU."]


def _notebook(cells: list[tuple[str, str, bool]]) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    for source, printed, is_test in cells:
        output = nbformat.v4.new_output("stream", name="stdout", text=printed)
        cell = nbformat.v4.new_code_cell(source, outputs=[output], execution_count=1)
        if is_test:
            cell.metadata.update(TEST_CELL)
        nb.cells.append(cell)
    return nb


def _png(path: Path, image_format: str = "PNG") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (4, 3), "white").save(path, image_format)


@pytest.fixture
def submission(tmp_path) -> Path:
    """A complete submission: the six executed notebooks, the two plots, the filled report."""
    folder = tmp_path / "alice"
    folder.mkdir()
    for name in NOTEBOOK_NAMES:
        nbformat.write(_notebook(OUTPUTS[name]), folder / f"{name}.ipynb")
    _png(folder / "img" / "loss_curve.png")
    _png(folder / "img" / "accuracy_curve.png")
    (folder / "rapport.md").write_text(fill_report_template(ANSWERS), encoding="utf-8")
    return folder


def _edit_report(folder: Path, old: str, new: str) -> None:
    report = folder / "rapport.md"
    text = report.read_text(encoding="utf-8")
    assert old in text
    report.write_text(text.replace(old, new, 1), encoding="utf-8")


def _kinds(check) -> list[tuple[str, str]]:
    return [(f.section, f.kind) for f in check.findings]


# --- a good report -----------------------------------------------------------------------------

def test_report_filled_from_a_run_has_no_finding(submission):
    check = check_report(submission)
    assert check.findings == [], check.to_markdown()
    assert check.complete and check.header_ok
    assert check.summary_columns() == {"report_complete": "yes", "report_findings": 0,
                                       "report_unmatched_numbers": 0}
    assert "Rien à corriger" in check.to_markdown()


def test_cli_exit_codes(submission, tmp_path, capsys):
    assert cli(["check-report", str(submission)]) == 0
    assert "Nothing to fix" in capsys.readouterr().out
    _edit_report(submission, "164 364 288 au total", "164 364 000 au total")
    assert cli(["check-report", str(submission)]) == 1
    assert "164 364 000" in capsys.readouterr().out
    assert cli(["check-report", str(submission / "rapport.md")]) == 2
    with pytest.raises(SystemExit) as usage:
        cli(["check-report"])
    assert usage.value.code == 2


# --- numbers -----------------------------------------------------------------------------------

@pytest.mark.parametrize("section, old, new", [
    ("Q2", "1 327 104", "1 372 104"),
    ("Q3", "1,328,642", "1,735,304"),
    ("Q4", "65,62 %", "91,20 %"),
    ("Q4", "41,7 s", "12 s"),
    (SECTION_6_TITLE, "54,1 %", "97,3 %"),
])
def test_number_no_run_printed_is_flagged_at_its_section(submission, section, old, new):
    _edit_report(submission, old, new)
    check = check_report(submission)
    assert [(f.section, f.value) for f in check.findings] == [(section, new)]
    assert check.complete, "a wrong number does not make the report incomplete"
    assert check.summary_columns()["report_unmatched_numbers"] == 1
    assert section in check.to_markdown() and check.unmatched_numbers[0].kind == NUMBER


@pytest.mark.parametrize("quoted", [
    "1 327 104", "1,327,104", "1327104", "1\u202f327\u202f104", "1\u00a0327\u00a0104",
    "1.327.104", "0,81 %", "0.81%", "0,8 %", "0.8074", "1,33 M", "1,3271 million",
])
def test_french_and_english_formats_match(submission, quoted):
    _edit_report(submission, "**1 327 104** paramètres", f"{quoted} paramètres")
    assert check_report(submission).findings == []


@pytest.mark.parametrize("quoted", ["1 327 105", "1,372,104", "0,82 %", "0.9%", "1,4 M"])
def test_near_misses_do_not_match(submission, quoted):
    _edit_report(submission, "**1 327 104** paramètres", f"{quoted} paramètres")
    assert [f.kind for f in check_report(submission).findings] == [NUMBER]


@pytest.mark.parametrize("quoted, matches", [
    ("65,62 %", True), ("65.6%", True), ("66 %", True), ("0,6562", True), ("0.66", True),
    ("65 %", False), ("0,65", False), ("65,7 %", False),
])
def test_rounding_percent_and_fraction(submission, quoted, matches):
    _edit_report(submission, "test 65,62 %", f"test {quoted}")
    assert (check_report(submission).findings == []) is matches


@pytest.mark.parametrize("duration, matches", [
    ("41,7 s", True), ("42 s", True), ("41.7s", True), ("0,7 min", True), ("0,6 min", False),
    ("40 s", False),
])
def test_epoch_time(submission, duration, matches):
    _edit_report(submission, "dure 41,7 s", f"dure {duration}")
    assert (check_report(submission).findings == []) is matches


def test_numbers_that_are_no_results_are_not_checked(submission):
    _edit_report(submission, "(72 couches).", (
        "(72 couches). Rang 8, alpha 16, 2 classes, 12 blocs de 768 et 3072, GPT-2 (124M), en 2024 "
        "; Q2 en `bf16` avec torch 2.13.0. Calcul : 4 × 8 × (768 + 768) = 49 152, soit "
        "110 592 × 12 ; alpha/rank = 16/8 = 2. Avec lr = 5e-4 et weight_decay = 0.1 ; "
        "un message de test vaut 0,33 point."))
    assert check_report(submission).findings == []


def test_outputs_in_html_and_plain_text_count(submission):
    nb = nbformat.read(submission / "05_training.ipynb", as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell("df", outputs=[nbformat.v4.new_output(
        "execute_result", data={"text/html": "<td>0.9133</td>", "text/plain": "acc 0.8871"},
        execution_count=2)]))
    nbformat.write(nb, submission / "05_training.ipynb")
    _edit_report(submission, "test 65,62 %", "test 65,62 % (91,3 % puis 88,7 % en relançant)")
    assert check_report(submission).findings == []


# --- sections, header, images --------------------------------------------------------------------

def test_template_text_left_is_flagged(submission):
    _edit_report(submission, Q4, "*À compléter.*")
    _edit_report(submission, Q5, Q5 + "\n\n*À compléter.*")
    check = check_report(submission)
    assert _kinds(check) == [("Q4", NO_ANSWER), ("Q5", TEMPLATE_TEXT)]
    assert not check.complete
    assert check.summary_columns()["report_complete"] == "no"


def test_section_whose_heading_was_removed_is_missing(submission):
    _edit_report(submission, "## 3. Injection de LoRA dans GPT-2", "## 3. Injection de LoRA")
    _edit_report(submission, "**Q5.** ", "")
    assert _kinds(check_report(submission)) == [("Q5", MISSING_SECTION)]


@pytest.mark.parametrize("header", ["*À compléter.*", ENV_TABLE.replace("| 123 |", "| not set |"),
                                    "OS: Linux\nPython: 3.11.9\nSeed: 123"])
def test_header_not_filled_is_flagged(submission, header):
    _edit_report(submission, ENV_TABLE, header)
    check = check_report(submission)
    assert not check.header_ok
    assert ("En-tête de reproductibilité", HEADER) in _kinds(check)


def test_header_as_key_value_lines_is_accepted(submission):
    _edit_report(submission, ENV_TABLE, "OS: Windows-11\nPython: 3.11.9\ntorch: 2.13.0\nSeed: 123")
    assert check_report(submission).header_ok


def _outside_png(folder: Path) -> None:
    _png(folder.parent / "outside.png")


@pytest.mark.parametrize("link, prepare, problem", [
    ("img/accuracy_curve.png", lambda f: (f / "img" / "accuracy_curve.png").unlink(), "absent"),
    ("img/accuracy_curve.png", lambda f: (f / "img" / "accuracy_curve.png").write_text("x"),
     "illisible"),
    ("img/Accuracy_Curve.png", lambda f: None, "absent"),
    ("img/curve.gif", lambda f: _png(f / "img" / "curve.gif", "GIF"), "GIF"),
    ("/home/alice/img/accuracy_curve.png", lambda f: None, "absolu"),
    ("C:\\Users\\alice\\accuracy_curve.png", lambda f: None, "absolu"),
    ("../outside.png", _outside_png, "hors du dossier"),
    ("https://example.org/accuracy_curve.png", lambda f: None, "web"),
])
def test_bad_images_are_flagged(submission, link, prepare, problem):
    prepare(submission)
    _edit_report(submission, "(img/accuracy_curve.png)", f"({link})")
    check = check_report(submission)
    assert _kinds(check) == [("5. Entraînement (`05_training`)", IMAGE)]
    assert check.missing_images == [link] and problem in check.findings[0].detail
    assert not check.complete


def test_other_image_formats_and_links(submission):
    _png(submission / "img" / "my plot.jpg", "JPEG")
    _edit_report(submission, "(img/accuracy_curve.png)", "(<img/my plot.jpg>)")
    _edit_report(submission, Q5, Q5 + '\n\n<img src="img/loss_curve.png" width="300">')
    assert check_report(submission).findings == []


def test_fewer_figures_than_the_template_asks_for(submission):
    _edit_report(submission, "![Courbe de précision](img/accuracy_curve.png)", "")
    assert _kinds(check_report(submission)) == [("5. Entraînement (`05_training`)", IMAGE)]


# --- missing pieces and rendering --------------------------------------------------------------

def test_missing_report_is_a_finding(tmp_path):
    check = check_report(tmp_path)
    assert _kinds(check) == [("rapport.md", MISSING_REPORT)]
    assert not check.complete and not check.header_ok
    assert check.summary_columns() == {"report_complete": "no", "report_findings": 1,
                                       "report_unmatched_numbers": 0}
    assert "rapport.md" in check.to_html()


def test_missing_unreadable_or_unexecuted_notebooks_are_reported(submission):
    (submission / "06_inference.ipynb").unlink()
    (submission / "01_lora_layer.ipynb").write_text("{not json")
    nb = nbformat.read(submission / "05_training.ipynb", as_version=4)
    for cell in nb.cells:
        cell.outputs = []
    nbformat.write(nb, submission / "05_training.ipynb")
    check = check_report(submission)
    notebooks = [f.detail for f in check.findings if f.kind == NOTEBOOK]
    expected = [("unreadable", "01_lora_layer"), ("never executed", "05_training"),
                ("not found", "06_inference")]
    assert len(notebooks) == 3 and all(a in d and b in d for (a, b), d in zip(expected, notebooks))
    assert {f.section for f in check.unmatched_numbers} == {"Q4", "Q5", SECTION_6_TITLE}
    assert check.complete, "the report itself is filled in"


def test_notebooks_in_a_clone_of_the_pack_are_found(submission):
    (submission / "notebooks").mkdir()
    for name in NOTEBOOK_NAMES:
        (submission / f"{name}.ipynb").rename(submission / "notebooks" / f"{name}.ipynb")
    assert check_report(submission).findings == []


def test_html_feedback_escapes_the_report(submission):
    _edit_report(submission, "**1 327 104** paramètres", "<b>1 372 104</b> paramètres")
    page = check_report(submission).to_html()
    assert "&lt;b&gt;1 372 104" in page and "<b>" not in page
    assert page.startswith("<!DOCTYPE html>")


def test_the_optional_bonus_section_may_be_left_out_but_not_the_others(submission):
    report = submission / "rapport.md"
    text = report.read_text(encoding="utf-8")
    bonus = text.index("## 7. Bonus")
    report.write_text(text[:bonus] + text[text.index("## Conclusion"):], encoding="utf-8")
    assert check_report(submission).findings == []
    text = report.read_text(encoding="utf-8")
    inference = text.index("## 6. Inférence")
    report.write_text(text[:inference] + text[text.index("## Conclusion"):], encoding="utf-8")
    assert [f.kind for f in check_report(submission).findings] == ["missing section"]
