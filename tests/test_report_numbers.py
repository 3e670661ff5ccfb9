"""The report check's numbers on reports students could write (issue 22): honest reports that
derive their numbers from their own outputs get no finding, invented numbers are still caught.

The reports and the runs they quote are in tests/data/reports/ (see its README); each becomes a
submission folder through benchmarks/report_check_precision.py, which also measures precision
and recall over them."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import nbformat
import pytest

from autograder.__main__ import main as autograder_cli
from benchmarks.report_check_precision import Case, build_submission, flagged, load_cases
from helpers.report_check import NOTEBOOK, NUMBER, check_report, main

CASES = {case.name: case for case in load_cases()}
HONEST = [name for name, case in CASES.items() if case.honest]
INVENTED = [name for name, case in CASES.items() if not case.honest]


def _edited(case: Case, section: str, old: str, new: str) -> Case:
    assert old in case.answers[section]
    answers = {**case.answers, section: case.answers[section].replace(old, new, 1)}
    return dataclasses.replace(case, answers=answers)


def _check(case: Case, tmp_path: Path):
    return check_report(build_submission(case, tmp_path / case.name))


def test_the_fixtures_cover_both_languages_and_runs():
    assert len(HONEST) >= 16 and len(INVENTED) >= 10
    assert {CASES[name].run for name in HONEST} == {"gpu", "cpu"}
    assert {"_fr_", "_en_"} <= {name[3:7] for name in HONEST}


@pytest.mark.parametrize("name", HONEST)
def test_honest_report_has_no_finding(name, tmp_path):
    check = _check(CASES[name], tmp_path)
    assert check.findings == [], check.to_markdown()


@pytest.mark.parametrize("name", INVENTED)
def test_invented_numbers_are_each_flagged(name, tmp_path):
    case = CASES[name]
    check = _check(case, tmp_path)
    assert sorted(flagged(check)) == sorted(case.invented), check.to_markdown()
    others = {f.kind for f in check.findings} - {NUMBER}
    assert others == ({NOTEBOOK} if case.cleared else set())
    assert check.complete


def test_a_derived_number_is_shown_to_the_instructor_with_its_sources(tmp_path):
    check = _check(CASES["h04_en_gaps"], tmp_path)
    gap = next(d for d in check.derived if d.value == "5.12%")
    assert gap.sources == ("98.00%", "92.88%") and gap.section == "Q5"
    note = "« 5.12% » dérivé de / derived from 98.00% and 92.88% (98.00% − 92.88%)"
    assert note in check.to_markdown(instructor=True)
    assert "derived from" not in check.to_markdown() + check.to_html()


def test_numbers_printed_as_such_are_not_noted_as_derived(tmp_path):
    assert _check(CASES["h01_fr_pasted"], tmp_path).derived == []


def test_finding_says_what_the_number_could_have_been(tmp_path):
    case = _edited(CASES["h01_fr_pasted"], "Q2", "soit 0,8074 %", "soit 0,82 %")
    (finding,) = _check(case, tmp_path).findings
    assert finding.value == "0,82 %"
    assert "closest printed: 0.8074 (0,81 %)" in finding.detail


def test_finding_points_at_a_nearer_derived_value(tmp_path):
    case = _edited(CASES["h04_en_gaps"], "Q5", "Gap: -5.12%", "Gap: -5.15%")
    (finding,) = _check(case, tmp_path).findings
    assert "derived: 98.00% − 92.88% (5.12%)" in finding.detail


def test_values_read_off_the_curves_need_the_saved_history(tmp_path):
    case = CASES["h06_fr_curve"]
    without = _check(dataclasses.replace(case, history=False), tmp_path / "without")
    assert {"0,34", "0,016"} <= set(flagged(without))
    read_off = {d.value: d for d in _check(case, tmp_path / "with").derived}
    assert read_off["0,34"].sources == ("img/history.json",)
    assert "batch_loss[5]" in read_off["0,34"].how


DAMAGED = '{"batch_loss": [NaN, true, "0.34", 1e400], "examples_seen": 3}'


@pytest.mark.parametrize("history", ["{not json", '["a list"]', DAMAGED])
def test_a_damaged_history_backs_nothing(tmp_path, history):
    folder = build_submission(CASES["h06_fr_curve"], tmp_path / "damaged")
    (folder / "img" / "history.json").write_text(history)
    assert {"0,34", "0,016"} <= set(flagged(check_report(folder)))


@pytest.mark.parametrize("old, new, backed", [
    ("au batch 6", "au batch 60", False),     # the value at batch 6, said of another batch
    ("au batch 6", "au 6e batch", True),
    ("finit à 0,11", "finit à 0,14", False),  # within no curve's resolution of the last value
])
def test_a_curve_reading_is_matched_at_its_place(tmp_path, old, new, backed):
    case = _edited(CASES["h06_fr_curve"], "Q4", old, new)
    assert (flagged(_check(case, tmp_path)) == []) is backed


@pytest.mark.parametrize("old, new, backed", [
    ("moins de 7 minutes", "moins de 8 minutes", False),   # 6.99 min: 7 is the bound
    ("moins de 7 minutes", "moins de 6 minutes", False),
    ("moins de 7 minutes", "plus de 7 minutes", False),
    ("moins de 7 minutes", "en 7 minutes", True),           # rounded
    ("environ 2,3 min", "environ 2,2 min", False),          # the mean is 139.8 s
])
def test_minutes_and_bounds(tmp_path, old, new, backed):
    case = _edited(CASES["h05_fr_minutes"], "Q4", old, new)
    assert (flagged(_check(case, tmp_path)) == []) is backed


@pytest.mark.parametrize("quoted, backed", [
    ("1,32 M", True), ("1,33 M", True), ("1,327 M", True), ("1,34 M", False), ("1,31 M", False),
])
def test_counts_in_millions_rounded_or_truncated(tmp_path, quoted, backed):
    case = _edited(CASES["h08_fr_truncated"], "Q2", "Environ 1,32 M", f"Environ {quoted}")
    assert (flagged(_check(case, tmp_path)) == []) is backed


@pytest.mark.parametrize("sentence", [
    "La somme des précisions fait 190,88 %.",        # 98.00 + 92.88: no meaning, not derived
    "Une époque dure 149 s.",                         # 149 is printed, but not in seconds
    "Les gelés font 163 037 185 paramètres.",         # one off 164,364,288 − 1,327,104
])
def test_combinations_keep_to_their_kind(tmp_path, sentence):
    case = _edited(CASES["h12_fr_mean"], "Q5", "Le test", f"{sentence} Le test")
    assert len(flagged(_check(case, tmp_path))) == 1


def test_progress_bar_percentages_back_no_number(tmp_path):
    case = _edited(CASES["h12_fr_mean"], "Q5", "Le test", "83 % de réussite. Le test")
    folder = build_submission(case, tmp_path / "bar")
    path = folder / "05_training.ipynb"
    nb = nbformat.read(path, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell("train()", outputs=[nbformat.v4.new_output(
        "stream", name="stderr",
        text="epoch 1/3:  83%|████████▎ | 109/131 [02:15<00:27]")]))
    nbformat.write(nb, path)
    assert flagged(check_report(folder)) == ["83 %"]


def test_cli_instructor_view(tmp_path, capsys):
    folder = build_submission(CASES["h04_en_gaps"], tmp_path / "dana")
    assert main([str(folder)]) == 0
    assert "derived from" not in capsys.readouterr().out
    assert main([str(folder), "--instructor"]) == 0
    assert "derived from 98.00% and 92.88%" in capsys.readouterr().out
    assert autograder_cli(["check-report", str(folder)]) == 0
    assert "derived from 98.00% and 92.88%" in capsys.readouterr().out
