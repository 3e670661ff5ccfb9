"""A later notebook whose earlier step is unfinished says "finish step N first" in every
failing check, under JupyterLab's Validate (`nbgrader validate`) and under `autograde`,
instead of the NameError or wrong counts that follow."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import nbformat
import pytest

from autograder.build.course import ASSIGNMENT
from autograder.demo.examples import complete_solution, untouched_release, write_submission
from autograder.grade.environment import student_environment
from autograder.grade.runner import prepare_template
from helpers.carry import CARRY_DIR_VAR

STEP_1_FIRST = "Finish step 1 first: 01_lora_layer.ipynb is not finished"


def _step_2_on_unfinished_step_1(folder):
    """02 complete, 01 as released (its exercise still the placeholder)."""
    write_submission({"01_lora_layer": untouched_release()["01_lora_layer"],
                      "02_lora_wrapper": complete_solution()["02_lora_wrapper"]}, folder)
    return folder


@pytest.mark.slow
def test_validate_names_the_unfinished_step(tmp_path, monkeypatch):
    from nbgrader.validator import Validator
    from traitlets.config import Config

    folder = _step_2_on_unfinished_step_1(tmp_path / "student")
    for name, value in {**student_environment(tmp_path / "scratch"),
                        CARRY_DIR_VAR: str(folder)}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(folder)
    config = Config()
    config.Execute.timeout = 600  # importing torch on a loaded machine
    failed = Validator(config=config).validate(str(folder / "02_lora_wrapper.ipynb"))["failed"]
    errors = [cell["error"] for cell in failed]  # Validate lists the failing test cells
    assert errors and all(STEP_1_FIRST in error for error in errors), errors
    assert all("This cell then failed with NameError: name &#39;LoRALayer&#39; is not defined"
               in error for error in errors)  # what it replaces, as a note


@pytest.mark.slow
def test_autograde_names_the_unfinished_step(tmp_path):
    """The grader's carry folder (normally the masters) holding an unfinished step 1."""
    template = prepare_template(tmp_path / "template")
    masters = template / "source" / ASSIGNMENT
    nbformat.write(untouched_release()["01_lora_layer"], masters / "01_lora_layer.ipynb")
    staged = write_submission({"02_lora_wrapper": complete_solution()["02_lora_wrapper"]},
                              tmp_path / "staged")
    dest = tmp_path / "incoming"
    dest.mkdir()
    subprocess.run([sys.executable, "-m", "autograder.grade.worker", "--template", str(template),
                    "--staged", str(staged), "--student", "alice", "--dest", str(dest),
                    "--digest", "-"], check=True, capture_output=True, timeout=1200,
                   env={**os.environ, "PYTHONPATH": os.environ.get("PYTHONPATH", "")})
    result = json.loads((dest / "result.json").read_text())
    step_2 = next(nb for nb in result["notebooks"] if nb["name"] == "02_lora_wrapper")
    assert step_2["score"] == 0 and set(step_2["failed"]) == set(step_2["max_tests"])
    assert all(message.startswith(f"CarryForwardError: {STEP_1_FIRST}")
               for message in step_2["failed"].values()), step_2["failed"]
    feedback = (dest / "feedback" / "02_lora_wrapper.html").read_text()
    assert "Finish step 1 first" in feedback
