"""Students graded in lanes (autograder.grade.runner.grade_in_lanes): each lane's next worker
is started, to warm up, while one grades; a worker started with --wait reads nothing before go."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pytest

from autograder.grade.runner import grade_in_lanes
from autograder.grade.worker import WAIT_ENDED


class FakeWorker:
    """What grade_in_lanes sees of a started worker, recording what happens to it."""

    def __init__(self, name: str, log: list[tuple[str, str]], lock: threading.Lock):
        self.name, self.log, self.lock = name, log, lock
        self.record("start")

    def record(self, event: str) -> None:
        with self.lock:
            self.log.append((event, self.name))

    def go(self) -> None:
        self.record("go")

    def wait_nearly_done(self) -> None:
        self.record("nearly")

    def abort(self) -> None:
        self.record("abort")


def lanes_log(students, lanes):
    log, lock = [], threading.Lock()

    def finish(worker: FakeWorker) -> None:
        worker.record("finish")

    grade_in_lanes(students, lanes, lambda name: FakeWorker(name, log, lock), lambda: None,
                   finish)
    return log


def test_one_lane_starts_the_next_worker_when_the_current_one_is_nearly_done():
    log = lanes_log(["a", "b", "c"], lanes=1)
    assert log == [("start", "a"), ("go", "a"), ("nearly", "a"), ("start", "b"), ("finish", "a"),
                   ("go", "b"), ("nearly", "b"), ("start", "c"), ("finish", "b"),
                   ("go", "c"), ("nearly", "c"), ("finish", "c")]


def test_every_student_is_graded_once_in_two_lanes_and_at_most_two_warm_ones_wait():
    students = [f"s{i}" for i in range(7)]
    log = lanes_log(students, lanes=2)
    for event in ("start", "go", "finish"):
        assert sorted(name for e, name in log if e == event) == students
    alive, most = set(), 0
    for event, name in log:
        if event == "start":
            alive.add(name)
        elif event == "finish":
            alive.discard(name)
        most = max(most, len(alive))
    assert most <= 4  # two lanes: one grading and one warming up each
    for name in students:  # in its order: started, told to go, finished
        assert [e for e, n in log if n == name] == ["start", "go", "nearly", "finish"]


def test_a_template_that_failed_ends_the_started_workers_and_raises():
    def ready():
        raise RuntimeError("the template could not be built")

    log, lock = [], threading.Lock()
    with pytest.raises(RuntimeError, match="template could not be built"):
        grade_in_lanes(["a", "b"], 1, lambda name: FakeWorker(name, log, lock), ready,
                       lambda worker: None)
    assert log == [("start", "a"), ("abort", "a")]


def test_the_warm_worker_is_aborted_when_finishing_fails():
    log, lock = [], threading.Lock()

    def finish(worker):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        grade_in_lanes(["a", "b"], 1, lambda name: FakeWorker(name, log, lock), lambda: None,
                       finish)
    assert log == [("start", "a"), ("go", "a"), ("nearly", "a"), ("start", "b"), ("abort", "b")]


@pytest.mark.slow
def test_a_waiting_worker_reads_nothing_and_ends_without_a_result_when_its_input_ends(tmp_path):
    """Template and submission do not even exist: warming up does not read them."""
    dest = tmp_path / "incoming"
    dest.mkdir()
    run = subprocess.run(
        [sys.executable, "-m", "autograder.grade.worker", "--template", str(tmp_path / "none"),
         "--staged", str(tmp_path / "nothing"), "--student", "alice", "--dest", str(dest),
         "--digest", "-", "--wait"],
        input=b"", capture_output=True, timeout=600)
    assert run.returncode == WAIT_ENDED, run.stderr[-2000:]
    assert list(dest.iterdir()) == []  # no result, nothing left behind


def test_the_template_is_built_in_the_folder_the_sandboxes_already_show(tmp_path):
    """Workers start (their sandboxes bind the template folder) before the template is built:
    building it must fill that very folder, not replace it."""
    from autograder.grade.runner import empty_folder, prepare_template

    template = empty_folder(tmp_path / "template")
    (template / "left over").mkdir()  # from an earlier run
    held = os.open(template, os.O_RDONLY | os.O_DIRECTORY)  # as a bind mount holds it
    try:
        prepare_template(template)
        seen = set(os.listdir(held))
    finally:
        os.close(held)
    assert "gradebook.db" in seen and "source" in seen and "left over" not in seen


def test_a_worker_that_never_finishes_is_killed_once_its_time_from_go_is_up(tmp_path):
    """The time limit counts once, from `go`: waiting for the notice and for the exit share it.
    The result says so and the student's grading is marked failed."""
    from autograder.grade.runner import StartedWorker, finish_worker
    from autograder.grade.staging import Submission
    from autograder.grade.table import load_results

    (tmp_path / "incoming" / "slow").mkdir(parents=True)
    notices, never_written = os.pipe()
    process = subprocess.Popen(["sleep", "60"], stdin=subprocess.PIPE, start_new_session=True)
    started = StartedWorker(Submission("slow", tmp_path), "-", process, tmp_path / "slow.log",
                            notices, timeout=2.0)
    try:
        begin = time.monotonic()
        started.go()
        assert finish_worker(started, tmp_path) is False
        assert 1.9 < time.monotonic() - begin < 3.5  # one limit, not one per wait
    finally:
        os.close(never_written)
    assert process.returncode == -9
    (result,) = load_results(tmp_path)
    assert "killed after the time limit" in result.notebooks[0].failed["_grading"]
