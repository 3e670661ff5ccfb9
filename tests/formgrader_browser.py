"""The formgrader browser test's helpers (tests/browser.py serves the student's): headless
Chromium from the Debian package driven by selenium, and a JupyterLab server on loopback.

    with chromium(screenshots) as driver:   # pytest.skip with the reason when it cannot run
        driver.get(url); wait_for_text(driver, "Q1"); save_screenshot(driver, screenshots, "q1")

    with jupyter_lab(root, env=...) as lab:  # lab.url("/lab") carries the login token
        ...
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--window-size=1400,1000")
PAGE_TIMEOUT = 120  # seconds: the machine running the tests may be loaded


@contextmanager
def chromium(screenshots: Path) -> Iterator:
    """A selenium driver on headless Chromium with a fresh profile; skips the test (saying
    why) when selenium, Chromium or chromedriver is not installed."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.skip("selenium is not installed (pip install -r requirements-test.txt)")
    for program in (CHROMIUM, CHROMEDRIVER):
        if not program.is_file():
            pytest.skip(f"{program} missing: apt-get install -y chromium chromium-driver")
    screenshots.mkdir(parents=True, exist_ok=True)
    print(f"browser screenshots: {screenshots}")
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        options = webdriver.ChromeOptions()
        options.binary_location = str(CHROMIUM)
        for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}"):
            options.add_argument(flag)
        driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
        driver.set_page_load_timeout(PAGE_TIMEOUT)
        try:
            yield driver
        finally:
            driver.quit()


def wait_for_text(driver, text: str, timeout: float = PAGE_TIMEOUT) -> None:
    """Wait until the page's visible text contains `text` (AssertionError otherwise)."""
    from selenium.webdriver.common.by import By

    deadline = time.monotonic() + timeout
    while text not in driver.find_element(By.TAG_NAME, "body").text:
        if time.monotonic() > deadline:
            raise AssertionError(f"{text!r} never appeared on {driver.current_url}")
        time.sleep(0.5)


def save_screenshot(driver, folder: Path, name: str) -> Path:
    path = folder / f"{name}.png"
    driver.save_screenshot(str(path))
    return path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


@dataclass
class Lab:
    port: int
    token: str

    def url(self, path: str = "/lab") -> str:
        return f"http://127.0.0.1:{self.port}{path}?token={self.token}"


@contextmanager
def jupyter_lab(root: Path, env: dict[str, str] | None = None,
                args: tuple[str, ...] = ()) -> Iterator[Lab]:
    """JupyterLab serving `root` on loopback with a fresh token, stopped afterwards."""
    if not shutil.which("jupyter") and not (Path(sys.executable).parent / "jupyter").exists():
        pytest.skip("jupyter is not installed")
    lab = Lab(free_port(), secrets.token_hex(16))
    command = [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ServerApp.ip=127.0.0.1",
               f"--ServerApp.port={lab.port}", "--ServerApp.port_retries=0",
               f"--ServerApp.root_dir={root}", f"--IdentityProvider.token={lab.token}", *args]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.append("--allow-root")
    process = subprocess.Popen(command, cwd=root, env={**os.environ, **(env or {})},
                               start_new_session=True)
    try:
        deadline = time.monotonic() + PAGE_TIMEOUT
        while not answers(lab.url("/api/status")):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"JupyterLab did not start (exit status {process.poll()})")
            time.sleep(0.5)
        yield lab
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
