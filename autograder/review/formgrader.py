"""`python -m autograder formgrader OUT`: nbgrader's formgrader on the class gradebook.

OUT, after `grade`, is an nbgrader course folder (`source/lora_lab/`, `autograded/<id>/lora_lab/`,
`feedback/`, `gradebook.db`); `write_course_config` adds its `nbgrader_config.py`.
`start_formgrader` starts JupyterLab on OUT (loopback only, a fresh token) with its own Jupyter
config folder that enables nbgrader's formgrader server extension, so a configuration that
disables nbgrader's instructor tools (the student pack's) never applies to it.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from autograder.build.course import ASSIGNMENT, course_config

FORMGRADER_EXTENSION = "nbgrader.server_extensions.formgrader"
# nbgrader's JupyterLab plugins for instructors: explicitly not disabled (this config folder
# comes first, so a student-side setting that disables them does not apply here)
INSTRUCTOR_PLUGINS = ("menu", "formgrader", "create-assignment", "course-list")
START_TIMEOUT = 180  # seconds for JupyterLab to answer (a loaded machine is slow)


def write_course_config(out: Path) -> Path:
    """OUT/nbgrader_config.py: the course settings the other commands build in code."""
    out = Path(out).resolve()
    settings = course_config(out).CourseDirectory
    lines = ["# Written by `python -m autograder formgrader`: this folder is an nbgrader course.",
             "c = get_config()  # noqa: F821 (defined by nbgrader when it loads this file)"]
    lines += [f"c.CourseDirectory.{name} = {value!r}" for name, value in sorted(settings.items())]
    path = out / "nbgrader_config.py"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _jupyter_config_dir(out: Path) -> Path:
    """A Jupyter config folder of the formgrader's own: the extension on, nothing disabled."""
    folder = out / "work" / "formgrader-jupyter-config"
    (folder / "labconfig").mkdir(parents=True, exist_ok=True)
    # the login cookie for the whole server: formgrader's pages give it no path otherwise, and
    # opening one of them first would leave formgrader's own API calls logged out
    server = {"ServerApp": {"jpserver_extensions": {FORMGRADER_EXTENSION: True}},
              "IdentityProvider": {"cookie_options": {"path": "/"}}}
    (folder / "jupyter_server_config.json").write_text(json.dumps(server, indent=1))
    enabled = {f"@jupyter/nbgrader:{plugin}": False for plugin in INSTRUCTOR_PLUGINS}
    (folder / "labconfig" / "page_config.json").write_text(
        json.dumps({"disabledExtensions": enabled}, indent=1))
    return folder


@dataclass
class FormgraderServer:
    """A running JupyterLab with formgrader; `url(path)` carries the login token."""

    process: subprocess.Popen
    port: int
    token: str

    def url(self, path: str = "/formgrader") -> str:
        return f"http://127.0.0.1:{self.port}{path}?token={self.token}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _answers(server: FormgraderServer) -> bool:
    try:
        with urllib.request.urlopen(server.url("/api/status"), timeout=5) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def start_formgrader(out: Path, port: int | None = None, log=None) -> FormgraderServer:
    """Start JupyterLab with formgrader on the graded folder OUT and wait until it answers.

    log: where the server's output goes (default: this process's stderr).
    """
    out = Path(out).resolve()
    if not (out / "gradebook.db").is_file() or not (out / "autograded").is_dir():
        raise FileNotFoundError(f"{out} holds no class gradebook: run `python -m autograder "
                                "grade SUBMISSIONS --out OUT` first.")
    write_course_config(out)
    (out / "feedback").mkdir(exist_ok=True)
    port = port or _free_port()
    token = secrets.token_hex(16)
    command = [sys.executable, "-m", "jupyter", "lab", "--no-browser",
               "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
               "--ServerApp.port_retries=0", f"--ServerApp.root_dir={out}",
               f"--IdentityProvider.token={token}"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.append("--allow-root")  # containers often run as root
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(_jupyter_config_dir(out))}
    process = subprocess.Popen(command, cwd=out, env=env, stdout=log, stderr=log,
                               start_new_session=True)
    server = FormgraderServer(process, port, token)
    deadline = time.monotonic() + START_TIMEOUT
    while not _answers(server):
        if process.poll() is not None or time.monotonic() > deadline:
            server.stop()
            raise RuntimeError(f"JupyterLab did not start on port {port} (exit status "
                               f"{process.poll()}); is the port free?")
        time.sleep(0.5)
    return server


def question_pages(out: Path) -> list[tuple[str, str]]:
    """(what is graded by hand, the formgrader page listing every student's answer to it)."""
    from autograder.review.gradebook import manual_cells

    return [(", ".join(cells), f"/formgrader/gradebook/{ASSIGNMENT}/{notebook}")
            for notebook, cells in manual_cells(out).items()]


def _headless() -> bool:
    return sys.platform.startswith("linux") and not (os.environ.get("DISPLAY")
                                                     or os.environ.get("WAYLAND_DISPLAY"))


def serve(out: Path, port: int | None = None, open_browser: bool | None = None) -> int:
    """The `formgrader` command: start, print the URLs, run until Ctrl-C."""
    server = start_formgrader(out, port)
    print(f"formgrader: {server.url('/formgrader')}")
    print(f"JupyterLab (menu Nbgrader > Formgrader): {server.url('/lab')}")
    print("Manual grading, one page per notebook, every student's answer:")
    for cells, page in question_pages(out):
        print(f"  {cells}: {server.url(page)}")
    if open_browser if open_browser is not None else not _headless():
        import webbrowser

        webbrowser.open(server.url("/formgrader"))
    print("Ctrl-C to stop; then `python -m autograder export` and `feedback`.")
    try:
        return server.process.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        server.stop()
