"""Drive JupyterLab in headless Chromium for browser tests: the server, the browser, screenshots.

A plain module (not a conftest) that every browser test imports (`from browser import ...`;
pytest puts tests/ on sys.path):

    with jupyterlab_server(root, tmp_path / "jupyter", env={...}) as lab, \
            chromium(tmp_path / "profile") as driver:
        driver.get(lab.url("lab"))

The browser is Debian's `chromium` with its `chromium-driver` (no browser download); a test
calls `require_browser()` first, which skips it with the reason when either is missing.
JupyterLab runs on 127.0.0.1 with a token, and with its configuration, settings, workspaces
and runtime files in a private folder, so the user's own JupyterLab setup never leaks in.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, TypeVar

import pytest

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "chromium", "chromium-browser")
CHROMEDRIVER_CANDIDATES = ("/usr/bin/chromedriver", "chromedriver")
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--window-size=1400,1000",
)
T = TypeVar("T")


def _which(candidates: tuple[str, ...]) -> str | None:
    return next((found for name in candidates if (found := shutil.which(name))), None)


def require_browser() -> tuple[str, str]:
    """Paths of chromium and chromedriver; skips the test (saying what is missing) otherwise."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        pytest.skip("browser test: selenium is not installed (pip install -r requirements-test.txt)")
    browser, driver = _which(CHROMIUM_CANDIDATES), _which(CHROMEDRIVER_CANDIDATES)
    missing = [name for name, path in (("chromium", browser), ("chromedriver", driver)) if not path]
    if missing:
        pytest.skip(f"browser test: {' and '.join(missing)} not found "
                    "(Debian: apt-get install -y chromium chromium-driver)")
    return browser, driver


def wait_for(condition: Callable[[], T], timeout: float, what: str, interval: float = 0.25) -> T:
    """Poll `condition` until it returns something truthy; fails the test naming `what`."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def wait_for_text(driver, text: str, timeout: float = 120) -> None:
    """Wait until the page's visible text contains `text` (the machine may be loaded)."""
    from selenium.webdriver.common.by import By

    wait_for(lambda: text in driver.find_element(By.TAG_NAME, "body").text, timeout,
             f"{text!r} on {driver.current_url}", interval=0.5)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class LabServer:
    """A running JupyterLab: where it listens, its token, its log file."""

    port: int
    token: str
    log: Path

    def url(self, path: str = "lab") -> str:
        """The address of `path` on this server, with the token."""
        return f"http://127.0.0.1:{self.port}/{path.lstrip('/')}?token={self.token}"

    def log_text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


@contextlib.contextmanager
def jupyterlab_server(root: Path, private: Path, env: dict[str, str] | None = None,
                      args: tuple[str, ...] = (), timeout: float = 90) -> Iterator[LabServer]:
    """JupyterLab serving `root` on loopback; its own config and settings live in `private`.

    `env` adds environment variables (e.g. JUPYTER_CONFIG_PATH for a configuration under
    test, LORA_LAB_GRADING), `args` adds command-line options.
    """
    private.mkdir(parents=True, exist_ok=True)
    port, token = _free_port(), secrets.token_hex(16)
    isolated = {
        "JUPYTER_CONFIG_DIR": private / "config",
        "JUPYTER_RUNTIME_DIR": private / "runtime",
        "JUPYTERLAB_SETTINGS_DIR": private / "settings",
        "JUPYTERLAB_WORKSPACES_DIR": private / "workspaces",
        "IPYTHONDIR": private / "ipython",
    }
    full_env = {**os.environ, **{k: str(v) for k, v in isolated.items()}, **(env or {})}
    command = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1",
               f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
               f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
               "--LabApp.expose_app_in_browser=True", *args]
    if hasattr(os, "geteuid") and os.geteuid() == 0:  # CI containers run as root
        command.append("--allow-root")
    log = private / "jupyterlab.log"
    with open(log, "w", encoding="utf-8") as log_file:
        process = subprocess.Popen(command, cwd=root, env=full_env, stdout=log_file,
                                   stderr=subprocess.STDOUT)
    server = LabServer(port, token, log)
    try:
        wait_for(lambda: process.poll() is not None or _answers(server.url("api/status")),
                 timeout, "JupyterLab to start")
        if process.poll() is not None:
            pytest.fail(f"JupyterLab exited with {process.returncode}:\n{server.log_text()[-3000:]}")
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.contextmanager
def chromium(profile: Path) -> Iterator["selenium.webdriver.Chrome"]:  # noqa: F821
    """Headless Debian Chromium driven by selenium, with a fresh profile in `profile`."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    browser, driver_path = require_browser()
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    driver.set_script_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


class Screenshots:
    """Numbered screenshots of a browser test, in one folder a person can look at."""

    def __init__(self, driver, folder: Path):
        self.driver, self.folder, self.count = driver, folder, 0
        folder.mkdir(parents=True, exist_ok=True)
        print(f"screenshots: {folder}")

    def take(self, name: str) -> Path:
        """Save the page as `NN_name.png`."""
        self.count += 1
        path = self.folder / f"{self.count:02d}_{name}.png"
        self.driver.save_screenshot(str(path))
        return path
