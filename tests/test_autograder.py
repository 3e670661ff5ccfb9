"""The autograder end to end: known submissions get exact points, broken ones the right
status, and nothing one student does changes another's grade."""

from __future__ import annotations

import html
import io
import re
import shutil
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from autograder.__main__ import build_parser, main as cli
from autograder import solutions
from autograder.demo.examples import (MISTAKE_EXAMPLES, TAMPER_TARGETS, complete_solution,
                                      deleted_test_cell, edited_test_cell, flooded_output,
                                      infinite_loop, killed_kernel, tampering, write_examples,
                                      write_submission)
from autograder.demo.hand_in import hand_in_with_report, with_invented_number
from autograder.checks import __file__ as CHECKS_INIT
from autograder.grade.results import GRADED, KERNEL_DIED, MISSING, TIMED_OUT, UNREADABLE
from autograder.grade.isolation import BUBBLEWRAP, NONE, best_sandbox
from autograder.grade.parallelism import default_jobs, threads_per_student
from autograder.grade.runner import parse_shard
from autograder.grade.table import load_results, merge_results
from autograder.grade.staging import (NOT_A_ZIP, OUTSIDE, STAGING_RECORD, SubmissionError,
                                      stage_submissions, staging_problems)

CHECKS_DIR = Path(CHECKS_INIT).parent
FULL = {"01_lora_layer": 6, "02_lora_wrapper": 5, "03_lora_injection": 8,
        "04_classification_head": 10, "05_training": 10, "06_inference": 7, "07_peft": 6}


# --- staging (fast) --------------------------------------------------------------------------

def _zip_bytes(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def test_stage_folder_of_folders_and_zips(tmp_path):
    source = tmp_path / "collected"
    (source / "alice" / "work" / "img").mkdir(parents=True)
    (source / "alice" / "work" / "01_lora_layer.ipynb").write_text("{}")
    (source / "alice" / "work" / "rapport.md").write_text("# r")
    (source / "alice" / "work" / "img" / "loss_curve.png").write_bytes(b"png")
    (source / "alice" / "notes.txt").write_text("ignored")
    (source / "bob.zip").write_bytes(_zip_bytes({
        "bob/02_lora_wrapper.ipynb": b"{}", "__MACOSX/bob/._02_lora_wrapper.ipynb": b"x"}))
    (source / "carol.zip").write_bytes(b"this is not a zip")
    staged = {s.student_id: s.folder for s in stage_submissions(source, tmp_path / "staging")}
    assert sorted(staged) == ["alice", "bob", "carol"]
    assert sorted(p.relative_to(staged["alice"]).as_posix() for p in staged["alice"].rglob("*")
                  if p.is_file()) == ["01_lora_layer.ipynb", "img/loss_curve.png", "rapport.md"]
    assert [p.name for p in staged["bob"].iterdir()] == ["02_lora_wrapper.ipynb"]
    assert [p.kind for p in staging_problems(staged["carol"])] == [NOT_A_ZIP]


def test_stage_lms_zip_with_moodle_names_and_nested_zip(tmp_path):
    lms = tmp_path / "export.zip"
    lms.write_bytes(_zip_bytes({
        "Alice Martin_12345_assignsubmission_file_/01_lora_layer.ipynb": b"{}",
        "Bob Durand_67890_assignsubmission_file_/work.zip":
            _zip_bytes({"lab/03_lora_injection.ipynb": b"{}", "lab/rapport.md": b"# r"}),
    }))
    staged = {s.student_id: s.folder for s in stage_submissions(lms, tmp_path / "staging")}
    assert sorted(staged) == ["12345", "67890"]
    assert sorted(p.name for p in staged["67890"].iterdir()) == ["03_lora_injection.ipynb", "rapport.md"]


def test_stage_keeps_the_report_links_and_stays_inside_the_staging(tmp_path):
    source = tmp_path / "collected"
    source.mkdir()
    (source / "dana.zip").write_bytes(_zip_bytes({
        "lab/rapport.md": b"# final ![loss](figs/loss.png)",
        "lab/figs/loss.png": b"png",
        "lab/img/history.json": b"{}",
        "lab/old/rapport.md": b"# draft",
        "lab/05_training.ipynb": b"{}",
        "elsewhere/img/accuracy_curve.png": b"png",
        "../escape.png": b"png",
        "lab/img/../../../escape2.png": b"png",
    }))
    (staged,) = stage_submissions(source, tmp_path / "staging")
    files = sorted(p.relative_to(staged.folder).as_posix() for p in staged.folder.rglob("*")
                   if p.is_file())
    assert files == ["05_training.ipynb", "figs/loss.png", "img/accuracy_curve.png",
                     "img/history.json", "rapport.md", STAGING_RECORD]
    assert (staged.folder / "rapport.md").read_text() == "# final ![loss](figs/loss.png)"
    assert [p.kind for p in staging_problems(staged.folder)] == [OUTSIDE, OUTSIDE]
    assert not list(tmp_path.rglob("escape*.png"))


def test_stage_lms_zip_with_custom_pattern(tmp_path):
    lms = tmp_path / "export.zip"
    lms.write_bytes(_zip_bytes({"s-001__01_lora_layer.ipynb": b"{}",
                                "s-002__01_lora_layer.ipynb": b"{}"}))
    staged = stage_submissions(lms, tmp_path / "staging", id_pattern=r"^(?P<id>s-\d+)__")
    assert [s.student_id for s in staged] == ["s-001", "s-002"]
    with pytest.raises(SubmissionError, match="id-pattern"):
        stage_submissions(lms, tmp_path / "again", id_pattern=r"^(?P<id>x-\d+)__")


def test_parallel_students_share_the_cores(monkeypatch):
    monkeypatch.setattr("autograder.grade.parallelism.available_cores", lambda: 8)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    assert threads_per_student(1) == {}  # serial: torch's own default
    assert threads_per_student(2) == {"OMP_NUM_THREADS": "4", "MKL_NUM_THREADS": "4"}
    assert threads_per_student(16)["OMP_NUM_THREADS"] == "1"
    monkeypatch.setenv("OMP_NUM_THREADS", "3")  # the instructor's choice wins
    assert threads_per_student(2) == {"OMP_NUM_THREADS": "3", "MKL_NUM_THREADS": "4"}


def test_default_jobs_fit_cores_and_memory(monkeypatch):
    monkeypatch.setattr("autograder.grade.parallelism.available_cores", lambda: 8)
    monkeypatch.setattr("autograder.grade.parallelism.available_memory_gb", lambda: 64.0)
    assert default_jobs() == 8
    monkeypatch.setattr("autograder.grade.parallelism.available_memory_gb", lambda: 10.0)
    assert default_jobs() == 2  # 3.5 GB per student
    monkeypatch.setattr("autograder.grade.parallelism.available_memory_gb", lambda: 1.0)
    assert default_jobs() == 1
    monkeypatch.setattr("autograder.grade.parallelism.available_memory_gb", lambda: None)
    assert default_jobs() == 8


def test_parse_shard():
    assert parse_shard(None) == (0, 1) and parse_shard("2/8") == (2, 8)
    for bad in ("8/8", "a/b", "3"):
        with pytest.raises(ValueError):
            parse_shard(bad)


def test_grade_and_demo_write_to_their_own_default_folders():
    parser = build_parser()
    assert parser.parse_args(["grade", "subs"]).out == Path("grading")
    assert parser.parse_args(["demo"]).out == Path("grading-demo")
    assert parser.parse_args(["demo", "--out", "elsewhere"]).out == Path("elsewhere")


def test_links_planted_in_a_workers_folder_are_removed(tmp_path):
    from autograder.grade.runner import _remove_links

    secret = tmp_path / "other_student_feedback.html"
    secret.write_text("not yours")
    feedback = tmp_path / "own" / "feedback"
    (feedback / "sub").mkdir(parents=True)
    (feedback / "01_lora_layer.html").write_text("yours")
    (feedback / "leak.html").symlink_to(secret)
    (feedback / "sub" / "leak_dir").symlink_to(tmp_path)
    _remove_links(tmp_path / "own")
    kept = sorted(p.relative_to(feedback).as_posix() for p in feedback.rglob("*"))
    assert kept == ["01_lora_layer.html", "sub"] and secret.read_text() == "not yours"


def test_instructor_mistakes_get_a_message_not_a_traceback(tmp_path, capsys):
    out = tmp_path / "out"
    assert cli(["grade", str(tmp_path / "nothere"), "--out", str(out)]) == 2
    assert "error: " in capsys.readouterr().err and not out.exists()
    (tmp_path / "empty").mkdir()
    assert cli(["grade", str(tmp_path / "empty"), "--out", str(out)]) == 2
    assert "No student submission found" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        cli(["grade", str(tmp_path / "empty"), "--shard", "4/4"])
    assert exit_.value.code == 2 and "INDEX must be between 0 and COUNT-1" in capsys.readouterr().err
    assert cli(["export", str(tmp_path / "never_graded")]) == 1
    assert "run `python -m autograder grade` first" in capsys.readouterr().err
    assert not (tmp_path / "never_graded").exists()


def test_a_cell_output_is_recorded_up_to_its_budget_and_errors_always():
    from autograder.grade.output_limits import ExecuteWithOutputBudget

    execute = ExecuteWithOutputBudget(max_cell_output_chars=100)
    execute.reset_execution_trackers()           # what nbclient does before running cells
    execute.clear_before_next_output = False

    def message(msg_type, content, run="run-1"):
        return {"msg_type": msg_type, "parent_header": {"msg_id": run},
                "header": {"msg_type": msg_type}, "content": content}

    outs = []
    for i in range(30):  # 30 x 10 characters: 10 kept, then one note
        execute.output(outs, message("stream", {"name": "stdout", "text": f"line {i:04d}\n"}),
                       None, 0)
    execute.output(outs, message("error", {"ename": "ValueError", "evalue": "late",
                                           "traceback": []}), None, 0)
    assert [o.output_type for o in outs] == ["stream"] * 10 + ["display_data", "error"]
    assert "more than 100 characters" in outs[10].data["text/plain"]
    again = []  # the next cell (another execution) has a budget of its own
    execute.output(again, message("stream", {"name": "stdout", "text": "ok\n"}, "run-2"), None, 1)
    assert again[0].text == "ok\n"


def test_outputs_are_capped_in_size_and_small_ones_kept():
    import nbformat

    from autograder.grade.output_limits import CapOutputSize

    def plot():
        return nbformat.v4.new_output("display_data", data={"image/png": "iVBOR" * 20_000})

    cell = nbformat.v4.new_code_cell("", outputs=[
        nbformat.v4.new_output("stream", name="stdout", text="x" * 50),
        nbformat.v4.new_output("stream", name="stdout", text="x" * 5_000),
        nbformat.v4.new_output("display_data", data={"text/html": "<b>" + "y" * 5_000 + "</b>",
                                                     "text/plain": "<HTML>"}),
        plot()])
    capped, _ = CapOutputSize(max_chars=1_000).preprocess_cell(cell, {}, 0)
    short, long_text, html, big_plot = capped.outputs
    assert short.text == "x" * 50
    assert long_text.text.startswith("x" * 1_000) and "truncated (5,000 characters)" in long_text.text
    assert len(long_text.text) < 1_100
    assert html.data == {"text/plain": "... Output removed (5,013 characters) ..."}
    assert big_plot.data == {"text/plain": "... Output removed (100,000 characters) ..."}
    kept, _ = CapOutputSize().preprocess_cell(nbformat.v4.new_code_cell("", outputs=[plot()]),
                                              {}, 0)
    assert kept.outputs[0].data["image/png"] == "iVBOR" * 20_000  # a plot (100 kB) stays


# --- grading (slow: real nbgrader runs in grading mode) ---------------------------------------

def _broken_submission() -> dict:
    """Every kind of breakage in one student, one per notebook."""
    notebooks = complete_solution()
    notebooks["01_lora_layer"] = deleted_test_cell()["01_lora_layer"]
    notebooks["02_lora_wrapper"] = infinite_loop()["02_lora_wrapper"]
    notebooks["03_lora_injection"] = flooded_output()["03_lora_injection"]
    notebooks["04_classification_head"] = killed_kernel()["04_classification_head"]
    return notebooks


# Each known mistake's example, the notebook it breaks, the graded cells it loses there, and
# what its feedback says. Each notebook is graded on the reference earlier steps, so the
# mistakes are grouped into two students, one mistake per notebook.
MISTAKES = {
    "scaling_alpha": ("01_lora_layer", {"hidden_lora_layer_scaling", "hidden_lora_layer_forward"},
                      "= alpha, not alpha / rank"),
    "paper_orientation": ("01_lora_layer", {"test_lora_layer_shapes"},
                          "the paper's and PEFT's layout"),
    "attention_only": ("03_lora_injection", {"test_injection_counts", "hidden_injection_model_state",
                                             "hidden_injection_gpt2", "hidden_injection_other_ranks"},
                       "only the attention layers are wrapped"),
    "b_frozen": ("03_lora_injection", {"test_injection_counts", "hidden_injection_model_state",
                                       "hidden_injection_gpt2", "hidden_injection_other_ranks",
                                       "hidden_injection_resnet"}, "B is still frozen"),
    "head_frozen": ("04_classification_head", {"test_head_counts", "hidden_head"},
                    "the new head is frozen"),
    "padding_token": ("04_classification_head", {"hidden_last_token", "hidden_last_token_padding"},
                      "a padding token (id 50256)"),
    "delegating": ("05_training", {"test_loss_goes_down", "hidden_training_step",
                                   "hidden_training_step_loss", "hidden_training_overfit"},
                   "hands its work to the pack's helpers.sanity._default_step"),
    "delegating_06": ("06_inference", {"test_examples", "hidden_classify_batch",
                                       "hidden_classify_probability", "hidden_classify_long_text",
                                       "hidden_classify_empty_text"},
                      "hands its work to the pack's helpers.inference.classify_texts"),
}
MISTAKE_STUDENTS = {
    "mistakes_a": ["scaling_alpha", "attention_only", "head_frozen", "delegating", "delegating_06"],
    "mistakes_b": ["paper_orientation", "b_frozen", "padding_token"],
}


def _mistake_submissions() -> dict[str, dict]:
    """The two students of MISTAKE_STUDENTS, each notebook from its mistake's example."""
    students = {}
    for student, mistakes in MISTAKE_STUDENTS.items():
        notebooks = {}
        for mistake in mistakes:
            example = MISTAKE_EXAMPLES[mistake.removesuffix("_06")]()
            notebook = MISTAKES[mistake][0]
            notebooks[notebook] = example[notebook]
        students[student] = notebooks
    return students


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    root = tmp_path_factory.mktemp("grading")
    submissions = root / "submissions"
    write_examples(submissions, ["complete", "untouched", "out_head_wrapped", "injection_twice"])
    hand_in_with_report(submissions / "complete")  # run like a student, report from the outputs
    with_invented_number(submissions / "complete", submissions / "invented_number")
    for student, notebooks in _mistake_submissions().items():
        write_submission(notebooks, submissions / student)
    broken = write_submission(_broken_submission(), submissions / "broken")
    (broken / "05_training.ipynb").write_text('{"cells": [ not json')
    (broken / "06_inference.ipynb").unlink()
    write_submission({"01_lora_layer": edited_test_cell()["01_lora_layer"]},
                     submissions / "edited_test")
    write_submission({"01_lora_layer": tampering()["01_lora_layer"]}, submissions / "tampering")
    out = root / "out"
    probes = [CHECKS_DIR.parent / TAMPER_TARGETS[0], out / TAMPER_TARGETS[1]]
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            code = cli(["grade", str(submissions), "--out", str(out), "--jobs", "2",
                        "--cell-timeout", "60"])
        tampered = [path for path in probes if path.exists()]
    finally:
        for path in probes:  # never leave a stray file among the checks
            path.unlink(missing_ok=True)
    warned = [str(w.message) for w in caught]
    return code, out, {r.student_id: r for r in load_results(out)}, (tampered, warned)


def _scores(result) -> dict[str, float]:
    return {nb.name: nb.score for nb in result.notebooks}


@pytest.mark.slow
def test_exit_code_and_outputs(graded):
    code, out, results, (_, warned) = graded
    assert code == 0  # students failing is not the grader failing
    # nbgrader's harmless SQLAlchemy warnings are not shown to the instructor
    assert not [w for w in warned if "not in session" in w], warned
    # ...nor in the students' logs, and neither is debugpy's warning about forked kernels
    logs = {path.name: path.read_text() for path in (out / "logs").glob("*.log")}
    assert "complete.log" in logs
    noisy = {name for name, text in logs.items()
             if "not in session" in text or "frozen modules" in text}
    assert not noisy, {name: logs[name][:500] for name in noisy}
    table = pd.read_csv(out / "grades.csv")
    assert sorted(table["student"]) == ["broken", "complete", "edited_test", "injection_twice",
                                        "invented_number", "mistakes_a", "mistakes_b",
                                        "out_head_wrapped", "tampering", "untouched"]
    assert set(table["delegated"].dropna()) == {
        "05_training:train_step, 06_inference:classify_text"}
    assert {"total", "max_total", "status", "03_lora_injection",
            "03_lora_injection:hidden_injection_gpt2"} <= set(table.columns)
    assert (out / "feedback" / "complete" / "01_lora_layer.html").is_file()
    # the report filled from the complete example's own grading-mode run passes; the same
    # report with one invented count is flagged there; the others have no rapport.md
    report = table.set_index("student")[["report_complete", "report_findings",
                                         "report_unmatched_numbers"]]
    assert report.loc["complete"].tolist() == ["yes", 0, 0]
    assert report.loc["invented_number"].tolist() == ["yes", 1, 1]
    assert set(report.drop(["complete", "invented_number"])["report_complete"]) == {"no"}
    feedback = (out / "feedback" / "invented_number" / "rapport.html").read_text()
    assert "Q3" in feedback and "1,332,738" in feedback
    # grade compares the class too: the two hand-ins that differ by one number score as copies
    # (every example is made from the reference, so no pair stands out from this class)
    similarity = pd.read_csv(out / "similarity.csv").set_index(["student_a", "student_b"])
    pair = similarity.loc[tuple(sorted(("complete", "invented_number")))]
    assert pair["overall"] > 0.9 and pair["rapport"] > 0.9
    assert (out / "similarity.html").is_file()


@pytest.mark.slow
def test_complete_solution_gets_full_marks(graded):
    result = graded[2]["complete"]
    assert _scores(result) == FULL
    assert all(nb.status == GRADED for nb in result.notebooks)


@pytest.mark.slow
def test_untouched_release_scores_zero_on_every_test(graded):
    result = graded[2]["untouched"]
    assert all(points == 0 for nb in result.notebooks for points in nb.tests.values())
    assert all(nb.max_score == FULL[nb.name] for nb in result.notebooks)


@pytest.mark.slow
def test_classic_mistakes_lose_exactly_the_checks_they_break(graded):
    results = graded[2]
    signatures = {"out_head_wrapped": "1,735,304 = 1,327,104 + 408,200: the LoRA branch of `out_head`",
                  "injection_twice": "2,654,208 = 2 x 1,327,104"}
    for student in ("out_head_wrapped", "injection_twice"):
        nb03 = next(nb for nb in results[student].notebooks if nb.name == "03_lora_injection")
        lost = {test for test, points in nb03.tests.items() if points < nb03.max_tests[test]}
        expected = {"test_injection_counts", "hidden_injection_model_state"}
        if student == "out_head_wrapped":
            expected |= {"hidden_injection_gpt2", "hidden_injection_other_ranks",
                         "hidden_injection_recursion"}
        assert lost == expected, student
        assert signatures[student] in nb03.failed["test_injection_counts"]
        assert signatures[student] in nb03.failed["hidden_injection_model_state"]
        others = {k: v for k, v in _scores(results[student]).items() if k != "03_lora_injection"}
        assert others == {k: v for k, v in FULL.items() if k != "03_lora_injection"}


@pytest.mark.slow
def test_broken_notebooks_get_their_status_and_cost_only_themselves(graded):
    result = graded[2]["broken"]
    status = {nb.name: nb.status for nb in result.notebooks}
    assert status == {"01_lora_layer": GRADED, "02_lora_wrapper": TIMED_OUT,
                      "03_lora_injection": GRADED, "04_classification_head": KERNEL_DIED,
                      "05_training": UNREADABLE, "06_inference": MISSING, "07_peft": GRADED}
    scores = _scores(result)
    assert scores["01_lora_layer"] == FULL["01_lora_layer"]  # deleted test cell restored, graded
    assert scores["03_lora_injection"] == FULL["03_lora_injection"]  # flooded output: capped
    feedback = (graded[1] / "feedback" / "broken" / "03_lora_injection.html").read_text()
    assert re.search(r"Output truncated \(3,\d{3},\d{3} characters\)", feedback)  # long line
    assert "output stopped: this cell printed more than 10,000,000 characters" in feedback
    assert "yyyyy" not in feedback and len(feedback) < 2_500_000  # 19 MB printed
    assert scores["02_lora_wrapper"] == 0 and scores["04_classification_head"] == 0


@pytest.mark.slow
def test_an_edited_test_cell_is_graded_as_written_in_the_master(graded):
    nb01 = graded[2]["edited_test"].notebooks[0]
    assert nb01.name == "01_lora_layer" and nb01.status == GRADED
    assert nb01.tests["test_lora_layer_zero_at_init"] == 0  # the print did not replace the test
    assert "LoRA output must be exactly zero" in nb01.failed["test_lora_layer_zero_at_init"]
    assert nb01.score == 4  # B random: the zero start's visible and hidden checks only


@pytest.mark.slow
@pytest.mark.skipif(best_sandbox() == NONE, reason="no sandbox (bubblewrap or namespaces) here")
def test_student_code_cannot_write_among_the_checks_or_the_results(graded):
    code, out, results, (tampered, _) = graded
    assert tampered == []
    assert results["tampering"].notebooks[0].score == FULL["01_lora_layer"]
    feedback = (out / "feedback" / "tampering" / "01_lora_layer.html").read_text()
    assert feedback.count("Read-only file system") == 2 - (best_sandbox() == BUBBLEWRAP)
    if best_sandbox() == BUBBLEWRAP:  # the other students' results are not even there
        assert feedback.count("No such file or directory") == 1


@pytest.mark.slow
def test_hidden_checks_are_not_revealed_in_feedback(graded):
    out = graded[1]
    html = (out / "feedback" / "untouched" / "03_lora_injection.html").read_text()
    assert "gpt2_rank_8" in html                   # the call is shown...
    assert "LORA_PARAMS_RANK_8" not in html        # ...but not the check's code
    assert "def gpt2_rank_8" not in html


@pytest.mark.slow
def test_rerun_skips_unchanged_students_and_merge_is_stable(graded, tmp_path):
    code, out, results, _ = graded
    before = (out / "grades.csv").read_text()
    merged = merge_results(out)
    assert merged.to_csv(index=False) == before
    shard_out = tmp_path / "merged"
    assert cli(["merge", str(shard_out), str(out)]) == 0
    assert pd.read_csv(shard_out / "grades.csv").equals(pd.read_csv(out / "grades.csv"))
    # a shard whose array task never ran is reported (exit 1); the others are still merged
    partial = tmp_path / "partial"
    assert cli(["merge", str(partial), str(out), str(tmp_path / "shard-lost")]) == 1
    assert pd.read_csv(partial / "grades.csv").equals(pd.read_csv(out / "grades.csv"))


@pytest.mark.slow
def test_slurm_merge_script_merges_shards(graded, tmp_path):
    """Results and private gradebooks split over two shard folders merge (with merge.sh) into
    the same grades.csv."""
    out = graded[1]
    students = sorted(p.stem for p in (out / "results").glob("*.json"))
    for index, student in enumerate(students):
        shard = tmp_path / f"shard-{index % 2}"
        (shard / "results").mkdir(parents=True, exist_ok=True)
        (shard / "results" / f"{student}.json").write_bytes(
            (out / "results" / f"{student}.json").read_bytes())
        shutil.copytree(out / "gradebooks" / student, shard / "gradebooks" / student)
        shutil.copy2(out / "gradebooks" / f"{student}.db", shard / "gradebooks")
    script = Path(__file__).parents[1] / "autograder" / "slurm" / "merge.sh"
    subprocess.run(["bash", str(script), str(tmp_path)], check=True, capture_output=True)
    assert pd.read_csv(tmp_path / "grades.csv").equals(pd.read_csv(out / "grades.csv"))
    # told to expect 3 shards, it merges the two that ran and fails naming the third
    run = subprocess.run(["bash", str(script), str(tmp_path), "3"], capture_output=True, text=True)
    assert run.returncode == 1 and "shard-2" in run.stderr
    assert pd.read_csv(tmp_path / "grades.csv").equals(pd.read_csv(out / "grades.csv"))


@pytest.mark.slow
def test_parallel_run_equals_serial_run(graded, tmp_path):
    out = graded[1]
    subset = tmp_path / "subset"
    for student in ("complete", "untouched"):
        shutil.copytree(out / "staging" / student, subset / student)
    assert cli(["grade", str(subset), "--out", str(tmp_path / "serial"), "--jobs", "1"]) == 0
    serial = {r.student_id: r for r in load_results(tmp_path / "serial")}
    for student in ("complete", "untouched"):
        parallel = graded[2][student]
        assert [(nb.name, nb.status, nb.tests) for nb in serial[student].notebooks] == \
               [(nb.name, nb.status, nb.tests) for nb in parallel.notebooks]


def _solution_lines() -> set[str]:
    import inspect

    lines = {line.strip() for line in inspect.getsource(solutions).splitlines()}
    return {line for line in lines if len(line) > 20 and not line.startswith(("#", '"'))}


@pytest.mark.slow
def test_known_mistakes_lose_their_checks_and_feedback_names_them(graded):
    out, results = graded[1], graded[2]
    code = _solution_lines()
    for student, mistakes in MISTAKE_STUDENTS.items():
        notebooks = {nb.name: nb for nb in results[student].notebooks}
        for mistake in mistakes:
            name, expected_lost, signature = MISTAKES[mistake]
            nb = notebooks[name]
            lost = {test for test, points in nb.tests.items() if points < nb.max_tests[test]}
            assert lost == expected_lost, mistake
            assert all(signature in nb.failed[test] for test in lost), (mistake, nb.failed)
            feedback = (out / "feedback" / student / f"{name}.html").read_text()
            assert signature in html.unescape(feedback), mistake
            for message in nb.failed.values():  # names the mistake, never the code
                assert not any(line in message for line in code), (mistake, message)


def test_new_gradebooks_get_the_version_nbgrader_would_stamp(tmp_path):
    import sqlite3

    from autograder.build.course import alembic_head
    from autograder.review.gradebook import _gradebook

    nbgrader_says = subprocess.run(  # a fresh process: nbgrader's own `alembic heads` call
        [sys.executable, "-c", "from nbgrader.api import get_alembic_version as v; print(v())"],
        capture_output=True, text=True, check=True).stdout.strip()
    assert alembic_head() == nbgrader_says and len(nbgrader_says) == 12
    with _gradebook(f"sqlite:///{tmp_path / 'gradebook.db'}"):
        pass
    with sqlite3.connect(tmp_path / "gradebook.db") as db:
        assert db.execute("SELECT version_num FROM alembic_version").fetchall() == [(nbgrader_says,)]
