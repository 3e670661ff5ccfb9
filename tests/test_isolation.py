"""autograder.grade.isolation: a student's worker sees of the grading run only its own files,
writes only into its own folder, without network, with a private /tmp, $HOME and PID namespace."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

import autograder
from autograder.__main__ import main as cli
from autograder.demo.examples import (SNOOP_MARK, complete_solution, snooping, wrong_lora_init,
                                      write_submission)
from autograder.grade import isolation
from autograder.grade.isolation import (BUBBLEWRAP, NAMESPACES, NONE, SANDBOX_HOME,
                                        bubblewrap_command, code_paths, namespaces_command,
                                        protections, sandbox_works)
from autograder.grade.runner import GRADING_INFO
from autograder.grade.table import load_results

needs_bubblewrap = pytest.mark.skipif(
    not sandbox_works(BUBBLEWRAP),
    reason="bubblewrap cannot run here (`bwrap` missing, or no user namespaces): "
           "apt-get install -y bubblewrap")
needs_namespaces = pytest.mark.skipif(not sandbox_works(NAMESPACES),
                                      reason="no user and mount namespaces on this machine")


@pytest.fixture
def run(tmp_path):
    """A grading folder with two students: alice (being graded) and bob."""
    out = tmp_path / "out"
    for student in ("alice", "bob"):
        (out / "staging" / student).mkdir(parents=True)
        (out / "staging" / student / "01_lora_layer.ipynb").write_text(f"{student}'s work")
    (out / "results").mkdir()
    (out / "results" / "bob.json").write_text("bob's grade")
    (out / "incoming" / "alice").mkdir(parents=True)
    return out


def _alice_sandbox(out: Path, no_network: bool = True) -> list[str]:
    return bubblewrap_command(["true"], [out / "staging" / "alice"], out / "incoming" / "alice",
                              [out], no_network)


def test_the_sandbox_is_given_only_the_students_own_folders(run):
    command = _alice_sandbox(run)
    assert not any("bob" in arg for arg in command)
    assert str(run) not in command and str(run / "results") not in command
    binds = [command[i + 1] for i, arg in enumerate(command) if arg in ("--ro-bind", "--bind")]
    writable = [command[i + 1] for i, arg in enumerate(command) if arg == "--bind"]
    assert writable == [str(run / "incoming" / "alice")]
    assert str(run / "staging" / "alice") in binds
    repository = Path(autograder.__file__).resolve().parents[1]
    assert str(repository) not in binds and str(repository / "autograder") in binds
    assert {"--unshare-all", "--die-with-parent", "--new-session", "--as-pid-1"} <= set(command)
    assert command[command.index("--remount-ro") + 1] == "/"
    assert "--share-net" not in command and "--share-net" in _alice_sandbox(run, no_network=False)


def test_a_grading_folder_inside_the_shared_code_is_refused(run):
    inside = code_paths()[0] / "grading"
    with pytest.raises(ValueError, match="would show"):
        bubblewrap_command(["true"], [], run / "incoming" / "alice", [inside])


PROBE = """
import json, os, socket, sys
from pathlib import Path
out = Path(sys.argv[1])
seen = {"pids": sorted(int(p) for p in os.listdir("/proc") if p.isdigit()),
        "pid1": Path("/proc/1/cmdline").read_bytes().split(b"\\0")[0].decode(),
        "visible": sorted(str(p.relative_to(out)) for p in out.rglob("*")),
        "own_staged": (out / "staging" / "alice" / "01_lora_layer.ipynb").read_text(),
        "home": os.environ["HOME"], "home_files": os.listdir(os.environ["HOME"]),
        "tmp_files": sorted(os.listdir("/tmp")), "written": [], "refused": []}
places = [str(out), str(out / "staging" / "alice"), str(out / "incoming" / "alice")]
if sys.argv[2] == "everywhere":  # only where the host is known to be out of reach
    places = ["/", "/tmp", os.environ["HOME"], *places, os.path.dirname(os.__file__)]
for place in places:
    try:
        Path(place, "probe.txt").write_text("x")
        seen["written"].append(place)
    except OSError as error:
        seen["refused"].append(error.strerror)
try:
    socket.create_connection(("192.0.2.1", 80), timeout=2)
    seen["network"] = "connected"
except OSError as error:
    seen["network"] = error.strerror
print(json.dumps(seen))
"""


@needs_bubblewrap
def test_bubblewrap_shows_only_the_students_own_files(run, tmp_path):
    (tmp_path / "earlier_run" / "results").mkdir(parents=True)  # another grading on the machine
    (tmp_path / "earlier_run" / "results" / "carol.json").write_text("carol's grade")
    command = bubblewrap_command([sys.executable, "-c", PROBE, str(run), "everywhere"],
                                 [run / "staging" / "alice"], run / "incoming" / "alice", [run])
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)
    assert seen["pids"] == [1] and seen["pid1"] == sys.executable  # itself, no parent
    assert seen["visible"] == ["incoming", "incoming/alice", "staging", "staging/alice",
                               "staging/alice/01_lora_layer.ipynb"]
    assert seen["own_staged"] == "alice's work"
    assert seen["home"] == SANDBOX_HOME and seen["home_files"] == []
    # under /tmp (as here), the folders leading to its own are made in its private /tmp:
    # writing there stays in the sandbox (checked on the host below)
    in_tmp = run.is_relative_to("/tmp")
    assert seen["tmp_files"] == ["home", *([run.relative_to("/tmp").parts[0]] if in_tmp else [])]
    assert seen["written"] == ["/tmp", SANDBOX_HOME, *([str(run)] if in_tmp else []),
                               str(run / "incoming" / "alice")]
    assert seen["refused"] == ["Read-only file system"] * (3 if in_tmp else 4)
    assert seen["network"] == "Network is unreachable"
    on_host = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("probe.txt"))
    assert on_host == ["out/incoming/alice/probe.txt"]
    assert not Path("/tmp/probe.txt").exists() and not (Path.home() / "probe.txt").exists()


@needs_namespaces
def test_namespaces_fallback_makes_everything_but_the_own_folder_read_only(run):
    own = run / "incoming" / "alice"
    command = namespaces_command([sys.executable, "-c", PROBE, str(run), "own"], [run], own)
    result = subprocess.run(command, capture_output=True, text=True, cwd=own, timeout=120)
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)
    assert "results/bob.json" in seen["visible"]  # what bubblewrap adds: the rest is hidden
    assert seen["written"] == [str(own)]
    assert seen["refused"] == ["Read-only file system"] * 2
    assert (own / "probe.txt").is_file() and not (run / "probe.txt").exists()
    if protections(NAMESPACES).network_off:
        assert seen["network"] == "Network is unreachable"


def test_protections_are_described_in_one_line():
    assert protections(BUBBLEWRAP).describe() == (
        "sandbox: bubblewrap (network off, writes only into its own folder, other students' "
        "files hidden, private /tmp and $HOME, own PID namespace)")
    assert "NOT enforced: network off" in protections(BUBBLEWRAP, no_network=False).describe()
    assert protections(NONE).describe().startswith("sandbox: none (nothing enforced); NOT")


def test_grade_refuses_to_run_without_a_sandbox_unless_unsafe(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(isolation, "best_sandbox", lambda: NONE)
    assert cli(["grade", str(tmp_path / "subs"), "--out", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "no sandbox on this machine" in error and "--unsafe" in error
    assert cli(["grade", str(tmp_path / "subs"), "--out", str(tmp_path / "out"), "--unsafe"]) == 2
    assert "no sandbox" not in capsys.readouterr().err  # it went on: the folder does not exist


# --- end to end (slow: three students graded in one run) --------------------------------------

SECRETS = {"alice": "alice-private-note-7f3a", "bob": "bob-private-note-91c2"}
STUDENT = "a_snooper"  # graded first, at the same time as alice


@pytest.fixture(scope="module")
def snooped(tmp_path_factory):
    root = tmp_path_factory.mktemp("snooping")
    submissions = root / "submissions"
    for student, notebooks in (("alice", complete_solution()), ("bob", wrong_lora_init())):
        notebooks["06_inference"].cells.append(
            nbformat.v4.new_markdown_cell(SECRETS[student]))
        write_submission(notebooks, submissions / student)
    write_submission(snooping(), submissions / STUDENT)
    (root / "earlier_run" / "results").mkdir(parents=True)
    (root / "earlier_run" / "results" / "carol.json").write_text("carol-earlier-grade-55e0")
    out = root / "out"
    code = cli(["grade", str(submissions), "--out", str(out), "--jobs", "2",
                "--cell-timeout", "60"])
    return code, root, out


@pytest.mark.slow
@needs_bubblewrap
def test_a_snooping_student_finds_nothing_of_the_others(snooped):
    code, root, out = snooped
    assert code == 0
    results = {r.student_id: r for r in load_results(out)}
    full = {"01_lora_layer": 6, "02_lora_wrapper": 5, "03_lora_injection": 8,
            "04_classification_head": 10, "05_training": 10, "06_inference": 7,
            "07_peft": 6}
    assert {nb.name: nb.score for nb in results["alice"].notebooks} == full
    assert {nb.name: nb.score for nb in results["bob"].notebooks} == {**full, "01_lora_layer": 4}
    assert {nb.name: nb.score for nb in results[STUDENT].notebooks} == full
    html = (out / "feedback" / STUDENT / "06_inference.html").read_text()
    # it ran, searched, and found its own files: the search works...
    assert re.search(r"snoop done: \d+ files", html)
    assert f"snoop file: {out / 'staging' / STUDENT / '06_inference.ipynb'}" in html
    processes = [p for p in re.findall(r"snoop process: (.*)", html) if p.strip()]
    worker = f"{sys.executable} -m autograder.grade.worker --template {out / 'work'}"
    assert processes[0].startswith(worker)                  # PID 1: its own worker
    assert f"--staged {out / 'staging' / STUDENT} " in processes[0]
    # then multiprocessing's fork server and resource tracker, its kernel and the one already
    # started for notebook 07 (forks of the fork server, with its command line): nothing else
    started_by_the_worker = ("multiprocessing.forkserver import main",
                             "multiprocessing.resource_tracker import main")
    assert all(any(mark in p for mark in started_by_the_worker) for p in processes[1:])
    assert sum(started_by_the_worker[0] in p for p in processes) == 3
    # ...and nothing of the others, of the grading run or of an earlier run is in its feedback
    feedback = "".join(p.read_text() for p in (out / "feedback" / STUDENT).iterdir())
    feedback += (out / "results" / f"{STUDENT}.json").read_text()
    for secret in ["alice", "bob", *SECRETS.values(), "carol", str(out / "results"),
                   str(out / "feedback"), str(out / "logs"), str(out / "grades.csv")]:
        assert secret not in feedback, secret
    # every file it found is its own or the course template, or else in its private /tmp
    found = [Path(p) for p in re.findall(r"snoop file: (/\S+?):", html)]
    own_parts = [out / "incoming" / STUDENT, out / "staging" / STUDENT, out / "work"]

    def allowed(path: Path) -> bool:
        if path.is_relative_to(root):  # the test's folder (the run, an earlier run)
            return any(path.is_relative_to(part) for part in own_parts)
        return path.is_relative_to("/tmp")
    assert len(found) > 10 and [p for p in found if not allowed(p)] == []
    # it could write only into its own folder and its private /tmp and $HOME (in memory)...
    written = re.findall(r"snoop written: (\S+)", html)
    own = out / "incoming" / STUDENT
    assert written[:2] == ["/tmp", SANDBOX_HOME] and str(own) in written
    assert all(Path(p).is_relative_to("/tmp") or Path(p).is_relative_to(own) for p in written)
    refused = re.findall(r"snoop refused: (\S+): Read-only file system", html)
    assert {"/", sys.prefix} <= set(refused)
    # ...so no file it wrote is left anywhere (its own folder is removed after grading)
    assert json.loads((out / GRADING_INFO).read_text())["sandbox"] == BUBBLEWRAP
    left = [p for p in root.rglob(SNOOP_MARK)]
    left += [p for p in (Path("/"), Path("/tmp"), Path.home(), Path(sys.prefix),
                         *code_paths()) if (p / SNOOP_MARK).exists()]
    assert left == []
