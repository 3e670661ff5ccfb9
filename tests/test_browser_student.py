"""The student's JupyterLab in a real browser: the release as a student sees and uses it.

JupyterLab runs on loopback with the student configuration (`student_jupyter/`) on a copy of
the release in the student pack's layout, in grading mode; headless Chromium opens 01, runs
Validate before and after writing `LoRALayer` into the exercise cell, runs all cells, checks
that nbgrader shows only its Validate button, and opens 03 with 02 unfinished. Screenshots of
every step go to the folder printed at the start.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest

from autograder.build.course import RELEASE_DIR
from helpers.modes import GRADING_VAR
from browser import Screenshots, chromium, jupyterlab_server, require_browser, wait_for

pytestmark = pytest.mark.browser

REPO_ROOT = Path(__file__).resolve().parent.parent
STUDENT_JUPYTER = REPO_ROOT / "student_jupyter"
STUDENT_LORA_LAYER = '''class LoRALayer(nn.Module):
    def __init__(self, in_dim, out_dim, rank, alpha):
        super().__init__()
        self.A = nn.Parameter(torch.empty(in_dim, rank))
        torch.nn.init.kaiming_uniform_(self.A, a=math.sqrt(5))
        self.B = nn.Parameter(torch.zeros(rank, out_dim))
        self.scaling = alpha / rank

    def forward(self, x):
        return self.scaling * (x @ self.A @ self.B)'''
CURRENT = "const panel = window.jupyterapp.shell.currentWidget;"
INSTRUCTOR_LOG_LINES = ("exchange directory", "Error fetching courses", "No nbgrader_config.py",
                        "formgrader", "assignment_list", "course_list")


def _student_copy(root: Path) -> Path:
    """The release as unzipped from the student pack: notebooks/ and nbgrader_config.py."""
    (root / "notebooks").mkdir(parents=True)
    for notebook in sorted(RELEASE_DIR.glob("*.ipynb")):
        shutil.copy2(notebook, root / "notebooks" / notebook.name)
    shutil.copy2(REPO_ROOT / "nbgrader_config.py", root)
    return root


def _js(driver, body: str):
    return driver.execute_script(CURRENT + body)


def _open(driver, path: str) -> None:
    """Open `path` and wait for its kernel to be idle."""
    driver.execute_async_script(f"""
        const done = arguments[arguments.length - 1];
        window.jupyterapp.restored
            .then(() => window.jupyterapp.commands.execute('docmanager:open', {{path: {json.dumps(path)}}}))
            .then(() => done(true), error => done(String(error)));""")
    wait_for(lambda: _js(driver, f"return !!(panel && panel.context && panel.context.path === "
                                 f"{json.dumps(path)} && panel.sessionContext.session "
                                 "&& panel.sessionContext.kernelDisplayStatus === 'idle')"),
             120, f"{path} to open with an idle kernel")


def _save(driver) -> None:
    _js(driver, "window.jupyterapp.commands.execute('docmanager:save');")
    wait_for(lambda: not _js(driver, "return panel.context.model.dirty;"), 30, "the save")


def _run_all(driver) -> None:
    """Run All Cells (the Run menu's command), then wait until the kernel is done or a cell failed."""
    _js(driver, "window.jupyterapp.commands.execute('notebook:run-all-cells');")
    done = """
        const cells = panel.content.widgets.filter(c => c.model.type === 'code');
        const failed = cells.some(c => c.model.outputs.toJSON().some(o => o.output_type === 'error'));
        const ran = cells.every(c => c.model.executionCount !== null);
        return panel.sessionContext.kernelDisplayStatus === 'idle' && (ran || failed);"""
    time.sleep(1)
    wait_for(lambda: _js(driver, done), 150, "Run All to finish")


def _outputs(driver, cell_id: str) -> list[dict]:
    return _js(driver, f"return panel.content.widgets.find(c => c.model.id === "
                       f"{json.dumps(cell_id)}).model.outputs.toJSON();")


def _validate(driver) -> str:
    """Click Validate on the notebook's toolbar; the text of nbgrader's answer, then close it."""
    from selenium.webdriver.common.by import By

    panel = driver.execute_script("return window.jupyterapp.shell.currentWidget.node;")
    panel.find_element(By.CSS_SELECTOR, ".validate-button").click()
    dialog = wait_for(lambda: [d for d in driver.find_elements(By.CSS_SELECTOR, ".jp-Dialog")
                               if "Validation Results" in d.text], 150, "Validate's answer")[0]
    return dialog.text


def _close_dialog(driver) -> None:
    from selenium.webdriver.common.by import By

    driver.find_element(By.CSS_SELECTOR, ".jp-Dialog .jp-Dialog-footer button").click()
    wait_for(lambda: not driver.find_elements(By.CSS_SELECTOR, ".jp-Dialog"), 10, "the dialog to close")


def _type_into_cell(driver, cell_id: str, code: str) -> None:
    """Click into the cell's editor, select its text and type `code` over it."""
    from selenium.webdriver.common.keys import Keys

    editor = _js(driver, f"""
        const index = panel.content.widgets.findIndex(c => c.model.id === {json.dumps(cell_id)});
        const cell = panel.content.widgets[index];
        cell.node.scrollIntoView({{block: 'center'}});
        return cell.node.querySelector('.cm-content');""")
    editor.click()
    editor.send_keys(Keys.CONTROL, "a")
    # text input as an input method sends it: CodeMirror inserts it as typed, without auto-indent
    driver.execute_cdp_cmd("Input.insertText", {"text": code})


def test_student_works_through_01_and_meets_a_clear_carry_error_in_03(tmp_path):
    require_browser()
    started = time.monotonic()
    root = _student_copy(tmp_path / "lora-lab")
    shots_dir = tmp_path / "screenshots"
    env = {
        "JUPYTER_CONFIG_PATH": str(STUDENT_JUPYTER),
        GRADING_VAR: "1",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
    }
    with jupyterlab_server(root, tmp_path / "jupyter", env=env) as lab, \
            chromium(tmp_path / "chromium-profile") as driver:
        shots = Screenshots(driver, shots_dir)
        driver.get(lab.url("lab"))
        wait_for(lambda: driver.execute_script(
            "return !!(window.jupyterapp && window.jupyterapp.commands.hasCommand("
            "'docmanager:open'));"), 120, "JupyterLab")
        notebook = "notebooks/01_lora_layer.ipynb"
        _open(driver, notebook)
        shots.take("opened")

        # nbgrader shows its Validate button only; JupyterLab asks nothing about news
        menus = driver.execute_script("return Array.from(document.querySelectorAll("
                                      "'.lm-MenuBar-itemLabel')).map(e => e.textContent);")
        assert "Run" in menus and "Nbgrader" not in menus, menus
        commands = driver.execute_script("return window.jupyterapp.commands.listCommands();")
        assert "notebook:run-all-cells" in commands
        assert [c for c in commands if c.startswith("nbgrader:")] == []
        toasts = driver.execute_script("return Array.from(document.querySelectorAll("
                                       "'.jp-Notification-Toast')).map(e => e.textContent);")
        assert toasts == []
        shots.take("menu_bar_without_nbgrader_tools")

        # saving the untouched release notebook leaves it byte-identical
        assert _js(driver, "return panel.context.model.toJSON().metadata.language_info.version;")
        _js(driver, "panel.context.model.dirty = true;")  # a save even when nothing changed
        _save(driver)
        assert (root / notebook).read_bytes() == (RELEASE_DIR / "01_lora_layer.ipynb").read_bytes()

        answer = _validate(driver)
        shots.take("validate_untouched")
        assert "The following cell failed:" in answer and "NotImplementedError" in answer, answer
        assert "Success" not in answer, answer
        _close_dialog(driver)

        _type_into_cell(driver, "lora_layer", STUDENT_LORA_LAYER)
        assert _js(driver, "return panel.content.widgets.find(c => c.model.id === 'lora_layer')"
                           ".model.sharedModel.getSource();") == STUDENT_LORA_LAYER
        shots.take("lora_layer_written")

        _run_all(driver)
        shots.take("run_all")
        printed = {cell: "".join(o.get("text", "") for o in _outputs(driver, cell))
                   for cell in ("test_lora_layer_shapes", "test_lora_layer_zero_at_init")}
        assert printed == {"test_lora_layer_shapes": "Shapes OK\n",
                           "test_lora_layer_zero_at_init": "LoRA starts as a no-op: OK\n"}

        _save(driver)
        answer = _validate(driver)
        shots.take("validate_done")
        assert "Success! Your notebook passes all the tests." in answer, answer
        _close_dialog(driver)

        _open(driver, "notebooks/03_lora_injection.ipynb")
        _run_all(driver)
        shots.take("03_before_02")
        errors = [o for o in _outputs(driver, "setup") if o["output_type"] == "error"]
        assert len(errors) == 1 and len(errors[0]["traceback"]) == 1, errors
        assert errors[0]["ename"] == "CarryForwardError" and "02_lora_wrapper" in errors[0]["evalue"]
        assert errors[0]["traceback"][0].startswith("CarryForwardError: "), errors  # no internals
        shown = wait_for(lambda: driver.execute_script(  # the cell may be out of view after Run All
            CURRENT + "const cell = panel.content.widgets.find(c => c.model.id === 'setup');"
            "cell.node.scrollIntoView(); return Array.from(cell.node.querySelectorAll("
            "'.jp-OutputArea-output')).map(e => e.innerText.trim()).filter(text => text)"
            ".join('\\n');").strip(), 30, "the carry-forward error on the page")
        assert "\n" not in shown and shown.startswith("CarryForwardError: "), shown
        assert "02_lora_wrapper" in shown, shown

    log = lab.log_text()
    assert [line for line in log.splitlines()
            if any(bad in line for bad in INSTRUCTOR_LOG_LINES)] == []
    seconds = time.monotonic() - started
    print(f"browser test: {seconds:.0f} s, screenshots in {shots_dir}")
