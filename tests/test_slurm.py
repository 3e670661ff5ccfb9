"""The Slurm scripts against a real single-node cluster: a 4-task array and its merge give the
grades of a local run, and `submit.sh --resume` reruns only the task that was lost."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from autograder.__main__ import main as cli
from autograder.build.notebook_source import NOTEBOOK_NAMES
from autograder.demo.examples import (complete_solution, deleted_test_cell, edited_test_cell,
                                      untouched_release, wrong_lora_init, write_submission)
from autograder.grade.results import GRADED, NotebookResult, StudentResult
from autograder.grade.runner import write_roster
from slurm_cluster import slurm_cluster, unavailable_reason

REPO_ROOT = Path(__file__).resolve().parents[1]
SUBMIT = REPO_ROOT / "autograder" / "slurm" / "submit.sh"
TASKS = 4
JOBS_TIMEOUT = 1800  # seconds for a whole array on a loaded 2-core machine



@pytest.fixture(scope="module")
def cluster():
    reason = unavailable_reason()
    if reason:
        pytest.skip(f"no Slurm test cluster on this machine: {reason}")
    with slurm_cluster() as running:
        yield running


def _cheap_class(dest: Path) -> Path:
    """Six students graded for real, one or two notebooks each (a kernel per notebook)."""
    complete, untouched = complete_solution(), untouched_release()
    write_submission({"01_lora_layer": complete["01_lora_layer"]}, dest / "ada")
    write_submission({"01_lora_layer": untouched["01_lora_layer"]}, dest / "bob")
    write_submission({"01_lora_layer": wrong_lora_init()["01_lora_layer"]}, dest / "cy")
    write_submission({"01_lora_layer": edited_test_cell()["01_lora_layer"]}, dest / "dee")
    write_submission({"01_lora_layer": deleted_test_cell()["01_lora_layer"]}, dest / "eve")
    write_submission({"02_lora_wrapper": complete["02_lora_wrapper"]}, dest / "fay")
    return dest


def _grades(folder: Path) -> pd.DataFrame:
    return pd.read_csv(folder / "grades.csv").drop(columns="seconds")


def _submit(cluster, *args: str) -> str:
    env = cluster.env()
    env["SBATCH_MEM_PER_NODE"] = "1G"  # the scripts ask for 16G; a test machine may have less
    run = subprocess.run(["bash", str(SUBMIT), *args], env=env, capture_output=True, text=True,
                         cwd="/")  # the scripts must not depend on where they are run from
    assert run.returncode == 0, run.stdout + run.stderr
    return run.stdout


def _job_logs(out: Path) -> str:
    return "\n".join(f"--- {p.name}\n{p.read_text()[-2000:]}"
                     for p in sorted((out / "slurm-logs").glob("*.out")))


def test_merge_names_the_students_of_a_lost_shard(tmp_path, capsys):
    """Fast: shard 0 of 2 ran, shard 1 left nothing; the merge exits 1 naming both."""
    students = ["ann", "ben", "cat", "dan"]
    shard = tmp_path / "shard-0"
    write_roster(shard, students, ["ann", "cat"])
    for student in ("ann", "cat"):
        result = StudentResult(student, [NotebookResult(name, GRADED) for name in NOTEBOOK_NAMES])
        (shard / "results").mkdir(exist_ok=True)
        (shard / "results" / f"{student}.json").write_text(result.to_json())
    assert cli(["merge", str(tmp_path), str(shard), str(tmp_path / "shard-1")]) == 1
    errors = capsys.readouterr().err
    assert "NOT MERGED" in errors and "shard-1" in errors
    assert "NO RESULT for 2 student(s) of the class (not in grades.csv): ben, dan" in errors
    assert sorted(_grades(tmp_path)["student"]) == ["ann", "cat"]
    write_roster(tmp_path / "shard-1", students, ["ben", "dan"])  # ran, graded nobody yet
    assert cli(["merge", str(tmp_path), str(shard), str(tmp_path / "shard-1")]) == 1
    assert "NOT MERGED" not in capsys.readouterr().err


@pytest.mark.slurm
@pytest.mark.slow
def test_array_and_merge_equal_a_local_run_and_resume_reruns_only_the_lost_task(cluster,
                                                                                  tmp_path):
    submissions = _cheap_class(tmp_path / "submissions")
    out = tmp_path / "cluster"
    printed = _submit(cluster, str(submissions), str(out), str(TASKS))
    assert f"tasks 0,1,2,3 of {TASKS}" in printed
    # the reference, graded here while the cluster works
    assert cli(["grade", str(submissions), "--out", str(tmp_path / "local"), "--jobs", "1"]) == 0
    local = _grades(tmp_path / "local")
    cluster.wait_until_idle(JOBS_TIMEOUT)
    logs = _job_logs(out)
    assert [(out / f"shard-{i}" / "DONE").is_file() for i in range(TASKS)] == [True] * TASKS, logs
    assert len(local) == 6 and local.set_index("student").loc["ada", "total"] > \
        local.set_index("student").loc["bob", "total"]  # graded for real, not all alike
    pd.testing.assert_frame_equal(_grades(out), local)

    # task 1 died: its shard is lost and the merge names its students instead of dropping them
    lost = json.loads((out / "shard-1" / "roster.json").read_text())["shard"]
    assert len(lost) == 2
    shutil.rmtree(out / "shard-1")
    shutil.rmtree(out / "results")
    merge = subprocess.run(["bash", str(REPO_ROOT / "autograder" / "slurm" / "merge.sh"),
                            str(out), str(TASKS)], capture_output=True, text=True)
    assert merge.returncode == 1
    assert f"NO RESULT for 2 student(s) of the class (not in grades.csv): {', '.join(lost)}" \
        in merge.stderr
    assert sorted(_grades(out)["student"]) == sorted(set(local["student"]) - set(lost))

    printed = _submit(cluster, "--resume", str(out))
    assert f"tasks 1 of {TASKS}" in printed
    cluster.wait_until_idle(JOBS_TIMEOUT)
    assert (out / "shard-1" / "DONE").is_file(), _job_logs(out)
    pd.testing.assert_frame_equal(_grades(out), local)
    printed = _submit(cluster, "--resume", str(out))  # nothing left: only the merge again
    assert "merging only" in printed
    cluster.wait_until_idle(JOBS_TIMEOUT)
    pd.testing.assert_frame_equal(_grades(out), local)
