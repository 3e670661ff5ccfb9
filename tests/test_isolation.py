"""autograder.grade.isolation: a student's worker writes only into its own folder, without network."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from autograder.grade.isolation import isolated_command, support

PROBE = """
import socket, sys
from pathlib import Path
own, protected = Path(sys.argv[1]), Path(sys.argv[2])
(own / "kept.txt").write_text("ok")
for target in (protected / "refused.txt", protected / "deeper" / "refused.txt"):
    try:
        target.write_text("tampered")
        print("written", target)
    except OSError as error:
        print("refused", error.strerror)
if sys.argv[3] == "namespace":  # inside a network namespace: no interface to try
    try:
        socket.create_connection(("192.0.2.1", 80), timeout=2)
        print("network: connected")
    except OSError as error:
        print("network:", error.strerror)
"""


@pytest.fixture
def folders(tmp_path):
    protected = tmp_path / "grading"
    own = protected / "incoming" / "alice"
    own.mkdir(parents=True)
    (protected / "deeper").mkdir()
    return protected, own


@pytest.mark.skipif(not support().files, reason="no user and mount namespaces on this machine")
def test_student_code_writes_only_into_its_own_folder(folders):
    protected, own = folders
    network = "namespace" if support().network else "none"
    command = isolated_command([sys.executable, "-c", PROBE, str(own), str(protected), network],
                               [protected], own, no_network=True)
    run = subprocess.run(command, capture_output=True, text=True, cwd=own, timeout=60)
    assert run.returncode == 0, run.stderr
    assert (own / "kept.txt").read_text() == "ok"
    assert run.stdout.count("refused Read-only file system") == 2
    assert not (protected / "refused.txt").exists()
    assert not (protected / "deeper" / "refused.txt").exists()
    if support().network:
        assert "network: Network is unreachable" in run.stdout


def test_without_support_the_command_runs_as_it_is(monkeypatch, folders):
    import autograder.grade.isolation as isolation

    protected, own = folders
    monkeypatch.setattr(isolation, "support", lambda: isolation.Support(False, False))
    assert isolated_command(["true"], [protected], own) == ["true"]
    monkeypatch.setattr(isolation, "support", lambda: isolation.Support(True, False))
    assert isolated_command(["true"], [protected], own) == ["unshare", "-rn", "true"]
    assert isolated_command(["true"], [protected], own, no_network=False) == ["true"]
