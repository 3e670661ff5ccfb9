"""Similarity across a class (issue 18): exactly the copied pair is flagged, whatever its
disguise; what the release gives is not a match; the reference solution takes part."""

from __future__ import annotations

import csv
import json
import math
import shutil
from functools import cache

import pytest
import torch
from copydetect.utils import filter_code
from torch import nn

from autograder import solutions
from autograder.__main__ import main
from autograder.checks import (classification_head, inference, lora_injection, lora_layer,
                               lora_wrapper, training)
from autograder.demo.examples import complete_solution
from helpers.paths import BONUS_NOTEBOOKS
from autograder.review.similarity import (CSV_NAME, DOCUMENTS, HTML_NAME, REFERENCE,
                                          SimilarityOptions, boilerplate_documents, score_class,
                                          similarity_from_submissions, similarity_report,
                                          student_documents)
from similarity_class import (COPIED_PAIR, IMPLEMENTATIONS, LORA_LAYER, TEMPLATE_ONLY,
                              TEMPLATE_PAIR, disguise, write_class, write_student)


@pytest.fixture(scope="module")
def class_dir(tmp_path_factory):
    return write_class(tmp_path_factory.mktemp("similarity") / "submissions")


@pytest.fixture(scope="module")
def result(class_dir, tmp_path_factory):
    return similarity_report(class_dir, tmp_path_factory.mktemp("similarity-out"))


def _pair(result, a: str, b: str):
    return next(p for p in result.pairs if {p.student_a, p.student_b} == {a, b})


def test_the_class_has_six_distinct_implementations_of_each_exercise():
    for grade_id, sources in IMPLEMENTATIONS.items():
        normalised = {filter_code(source, "cell.py", "python")[0] for source in sources}
        assert len(normalised) >= 6, grade_id
    orientations = {".T" in source or "linear(x, self.A)" in source for source in LORA_LAYER}
    assert orientations == {True, False}, "both LoRA orientations"


def _run_cell(source: str) -> dict:
    """The names an exercise cell defines, run on the reference's earlier steps."""
    namespace = {"torch": torch, "nn": nn, "math": math, "LoRALayer": solutions.LoRALayer,
                 "LinearWithLoRA": solutions.LinearWithLoRA,
                 "last_token_logits": solutions.last_token_logits}
    exec(compile(source, "<exercise cell>", "exec"), namespace)
    return namespace


def _forward_in_either_orientation(LoRALayer) -> None:
    """The hidden forward check, accepting PEFT's (rank, in) x (out, rank) orientation too."""
    layer, reference = LoRALayer(20, 12, 4, 8.0), solutions.LoRALayer(20, 12, 4, 8.0)
    peft = tuple(layer.A.shape) == (4, 20)
    with torch.no_grad():
        layer.B.normal_()
        reference.A.copy_(layer.A.T if peft else layer.A)
        reference.B.copy_(layer.B.T if peft else layer.B)
        x = torch.randn(2, 7, 20)
        assert torch.allclose(layer(x), reference(x), atol=1e-5)


@cache
def _tiny_model_and_tokenizer():
    from helpers.tokenizer import gpt2_tokenizer

    return training._tiny_classifier(), gpt2_tokenizer()


def _classify_checks(classify_text) -> None:
    model, tokenizer = _tiny_model_and_tokenizer()
    context = model.pos_emb.weight.shape[0]
    inference.same_as_batch(classify_text, model, tokenizer, context)
    inference.probability_of_predicted_class(classify_text, model, tokenizer)
    inference.long_text_truncated(classify_text, model, tokenizer, context)
    inference.empty_text_is_an_error(classify_text, model, tokenizer)


HIDDEN_CHECKS = {  # grade_id -> the grader's hidden checks that run without GPT-2's full size
    "lora_layer": lambda ns: [check(ns["LoRALayer"]) for check in (
        lora_layer.parameter_count, lora_layer.initialisation, lora_layer.scaling,
        _forward_in_either_orientation)],
    "linear_with_lora": lambda ns: [check(ns["LinearWithLoRA"]) for check in (
        lora_wrapper.keeps_the_given_layer, lora_wrapper.lora_branch_sizes,
        lora_wrapper.bias_free_layers, lora_wrapper.adds_the_lora_update)],
    "replace_linear_with_lora": lambda ns: (
        lora_injection.returns_and_recurses(ns["replace_linear_with_lora"]),
        lora_injection.resnet_linear_layers(ns["replace_linear_with_lora"],
                                            solutions.freeze_and_activate_lora)),
    "freeze_and_activate_lora": lambda ns: lora_injection.resnet_linear_layers(
        solutions.replace_linear_with_lora, ns["freeze_and_activate_lora"]),
    "add_classification_head": lambda ns: classification_head.head_for_any_number_of_classes(
        ns["add_classification_head"]),
    "last_token_logits": lambda ns: classification_head.last_token_rows(ns["last_token_logits"]),
    "make_optimizer": lambda ns: training.optimizer_over_trainable_only(ns["make_optimizer"]),
    "calc_accuracy": lambda ns: training.accuracy_on_known_logits(ns["calc_accuracy"]),
    "train_step": lambda ns: (
        training.step_moves_only_lora_and_head(ns["train_step"]),
        training.step_loss_is_the_batch_loss(ns["train_step"])),
    "classify_text": lambda ns: _classify_checks(ns["classify_text"]),
}


@pytest.mark.slow
@pytest.mark.parametrize("grade_id,index", [(g, i) for g, sources in IMPLEMENTATIONS.items()
                                            for i in range(len(sources))])
def test_every_implementation_of_the_class_is_correct(grade_id, index):
    HIDDEN_CHECKS[grade_id](_run_cell(IMPLEMENTATIONS[grade_id][index]))


def test_exactly_the_copied_pair_is_flagged(result):
    assert [(p.student_a, p.student_b) for p in result.flagged] == [COPIED_PAIR]
    pair = result.flagged[0]
    assert "threshold" in pair.reason and "class median" in pair.reason, pair.reason
    assert pair.z >= result.options.min_z and pair.overall >= result.options.threshold


def test_renaming_reformatting_and_reordering_hide_nothing(result, class_dir):
    original, copier = COPIED_PAIR
    source = (class_dir / original / "01_lora_layer.ipynb").read_text(encoding="utf-8")
    copy = (class_dir / copier / "01_lora_layer.ipynb").read_text(encoding="utf-8")
    assert "weights_a = " in source and "weights_a = " not in copy  # renamed, reformatted
    pair = _pair(result, original, copier)
    written = [doc for doc in DOCUMENTS if doc not in BONUS_NOTEBOOKS]  # the class left 07 as released
    assert all(pair.scores[doc] >= 0.7 for doc in written), pair.scores
    assert pair.scores["answers"] >= 0.95 and pair.scores["rapport"] >= 0.9


def test_reordering_functions_alone_keeps_a_copy_whole():
    source = IMPLEMENTATIONS["classify_text"][5]  # a helper function, then classify_text
    helper, function = source.split("\n\n\n")
    reordered = f"{function}\n\n\n{helper}"
    assert reordered.index("def classify_text") < reordered.index("def _probabilities")
    docs = {name: {"06_inference": code} for name, code in
            (("a", source), ("b", reordered), ("c", IMPLEMENTATIONS["classify_text"][3]))}
    scored = score_class(docs, boilerplate_documents())
    assert _pair(scored, "a", "b").scores["06_inference"] >= 0.85  # only the seam changes
    assert _pair(scored, "a", "c").scores["06_inference"] < 0.5


def test_what_the_release_gives_is_no_match(result, class_dir):
    pair = _pair(result, *TEMPLATE_PAIR)
    assert not pair.flagged
    assert all(pair.scores[name] is None for name in TEMPLATE_ONLY)  # left as released
    assert pair.scores["rapport"] == 0  # only the name filled in the template
    # without excluding the release, the same two students would match there
    raw = score_class({name: student_documents(class_dir / name) for name in TEMPLATE_PAIR},
                      {}, SimilarityOptions())
    assert all(_pair(raw, *TEMPLATE_PAIR).scores[name] == 1 for name in TEMPLATE_ONLY)


def test_a_copy_of_the_reference_solution_is_flagged(class_dir, tmp_path):
    submissions = tmp_path / "submissions"
    shutil.copytree(class_dir, submissions)
    write_student(submissions / "hugo", complete_solution(), report=None)
    result = similarity_report(submissions, tmp_path / "out")
    flagged = {(p.student_a, p.student_b) for p in result.flagged}
    assert flagged == {COPIED_PAIR, (REFERENCE, "hugo")}
    assert _pair(result, REFERENCE, "hugo").scores["answers"] is None  # nothing to compare


def test_the_threshold_and_the_class_spread_decide(class_dir):
    documents = {folder.name: student_documents(folder) for folder in class_dir.iterdir()}
    boilerplate = boilerplate_documents()
    assert score_class(documents, boilerplate, SimilarityOptions(threshold=0.95)).flagged == []
    assert score_class(documents, boilerplate, SimilarityOptions(min_z=50)).flagged == []
    assert len(score_class(documents, boilerplate, SimilarityOptions(threshold=0.0,
                                                                     min_z=-99)).flagged) > 1


def test_csv_and_html_report(result):
    with open(result.csv_path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    n = len(result.students)
    assert len(rows) == n * (n - 1) // 2 and REFERENCE in result.students
    assert list(rows[0])[:2 + len(DOCUMENTS)] == ["student_a", "student_b", *DOCUMENTS]
    flagged = [(r["student_a"], r["student_b"]) for r in rows if r["flagged"] == "True"]
    assert flagged == [COPIED_PAIR]
    assert rows[0]["reason"] and float(rows[0]["overall"]) >= float(rows[1]["overall"])
    page = result.html_path.read_text(encoding="utf-8")
    assert "<mark>" in page and all(name in page for name in COPIED_PAIR)
    assert "a reason to look, not a verdict" in page
    assert "chloe & gaspard" in result.summary_line()


def test_similarity_command(class_dir, tmp_path, capsys):
    assert main(["similarity", str(class_dir), "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "1 pair(s) flagged" in printed and "chloe & gaspard" in printed
    assert (tmp_path / CSV_NAME).is_file() and (tmp_path / HTML_NAME).is_file()
    assert main(["similarity", str(class_dir), "--out", str(tmp_path), "--threshold", "1"]) == 0
    assert "no pair flagged among 7 students" in capsys.readouterr().out
    assert main(["similarity", str(tmp_path / "nothere"), "--out", str(tmp_path)]) == 2


def test_an_lms_zip_is_staged_like_grade_does(class_dir, tmp_path):
    archive = shutil.make_archive(str(tmp_path / "export"), "zip", class_dir)
    result = similarity_from_submissions(archive, tmp_path / "out")
    assert [(p.student_a, p.student_b) for p in result.flagged] == [COPIED_PAIR]
    assert len(result.students) == 8  # seven students and the reference


def test_disguise_keeps_code_valid():
    for sources in IMPLEMENTATIONS.values():
        for source in sources:
            compile(disguise(source), "<disguised>", "exec")


def test_unreadable_notebooks_are_skipped_and_list_sources_read(tmp_path):
    (tmp_path / "01_lora_layer.ipynb").write_text("{not json", encoding="utf-8")
    cell = {"cell_type": "code", "source": ["x = 1\n", "y = x + 1\n"],
            "metadata": {"nbgrader": {"solution": True, "grade_id": "lora_layer"}}}
    (tmp_path / "02_lora_wrapper.ipynb").write_text(f'{{"cells": [{json.dumps(cell)}]}}',
                                                    encoding="utf-8")
    (tmp_path / "rapport.md").write_text("Mon   Rapport\n\nÉcrit  par moi.", encoding="utf-8")
    docs = student_documents(tmp_path)
    assert "01_lora_layer" not in docs and docs["02_lora_wrapper"] == "x = 1\ny = x + 1\n"
    assert docs["rapport"] == "mon rapport écrit par moi."
