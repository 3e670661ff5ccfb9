"""The student's side of the release without a browser: JupyterLab settings shipped in the pack,
the release's file format against Jupyter Server's own save, exercise banners, and carry
errors shown as one line in a kernel."""

from __future__ import annotations

import asyncio
import json
import tomllib
import zipfile
from pathlib import Path

import nbformat
import pytest

from autograder.build.course import RELEASE_DIR
from autograder.build.notebook_source import NOTEBOOK_NAMES, defined_names, exercise_banner
from autograder.build.student_pack import build_student_pack
from helpers.notebook_format import KERNELSPEC, drop_python_version, notebook_text

REPO_ROOT = Path(__file__).resolve().parent.parent
STUDENT_JUPYTER = REPO_ROOT / "student_jupyter"
INSTRUCTOR_PLUGINS = {"@jupyter/nbgrader:assignment-list", "@jupyter/nbgrader:course-list",
                      "@jupyter/nbgrader:create-assignment", "@jupyter/nbgrader:formgrader",
                      "@jupyter/nbgrader:menu"}


def test_student_jupyter_config_keeps_only_validate():
    pages = json.loads((STUDENT_JUPYTER / "labconfig/page_config.d/student_lab.json").read_text())
    disabled = {plugin for plugin, off in pages["disabledExtensions"].items() if off}
    assert disabled == INSTRUCTOR_PLUGINS | {"@jupyterlab/apputils-extension:announcements"}
    server = json.loads((STUDENT_JUPYTER / "jupyter_server_config.d/student_lab.json").read_text())
    assert server["ServerApp"]["jpserver_extensions"] == {
        "nbgrader.server_extensions.assignment_list": False,
        "nbgrader.server_extensions.course_list": False,
        "nbgrader.server_extensions.formgrader": False,
        "helpers.notebook_format": True,
    }


def test_student_jupyter_package_installs_both_files_into_etc_jupyter():
    project = tomllib.loads((STUDENT_JUPYTER / "pyproject.toml").read_text(encoding="utf-8"))
    data_files = project["tool"]["setuptools"]["data-files"]
    installed = {f"{target}/{Path(source).name}": source
                 for target, sources in data_files.items() for source in sources}
    assert installed == {
        "etc/jupyter/jupyter_server_config.d/student_lab.json":
            "jupyter_server_config.d/student_lab.json",
        "etc/jupyter/labconfig/page_config.d/student_lab.json":
            "labconfig/page_config.d/student_lab.json",
    }
    assert all((STUDENT_JUPYTER / source).is_file() for source in installed.values())


def test_student_pack_installs_the_student_jupyter_settings(tmp_path):
    with zipfile.ZipFile(build_student_pack(tmp_path)) as archive:
        names = set(archive.namelist())
        requirements = archive.read("lora-lab/requirements.txt").decode().splitlines()
    assert {"lora-lab/nbgrader_config.py", "lora-lab/student_jupyter/pyproject.toml",
            "lora-lab/student_jupyter/jupyter_server_config.d/student_lab.json",
            "lora-lab/student_jupyter/labconfig/page_config.d/student_lab.json"} <= names
    assert "lora-lab/helpers/notebook_format.py" in names
    assert "./student_jupyter" in requirements and "-e ." in requirements
    repo_requirements = (REPO_ROOT / "requirements.txt").read_text().splitlines()
    assert "./student_jupyter" not in repo_requirements  # the instructor keeps nbgrader's tools


@pytest.mark.parametrize("name", NOTEBOOK_NAMES)
def test_release_is_written_as_jupyter_server_writes_it(name):
    text = (RELEASE_DIR / f"{name}.ipynb").read_text(encoding="utf-8")
    nb = nbformat.reads(text, as_version=4)
    assert nb.metadata["kernelspec"] == KERNELSPEC
    assert "version" not in nb.metadata["language_info"]
    assert text == notebook_text(nb)
    assert any(isinstance(cell["source"], list) for cell in json.loads(text)["cells"])


def test_unchanged_save_through_the_contents_api_is_byte_identical(tmp_path):
    """Jupyter Server's contents manager, given what JupyterLab sends back after a kernel
    started (the same notebook plus the kernel's Python version), writes the release's bytes."""
    from jupyter_server.services.contents.largefilemanager import AsyncLargeFileManager

    release = RELEASE_DIR / "01_lora_layer.ipynb"
    (tmp_path / release.name).write_bytes(release.read_bytes())

    async def open_and_save(hook: bool) -> bytes:
        manager = AsyncLargeFileManager(root_dir=str(tmp_path))
        if hook:
            manager.register_pre_save_hook(drop_python_version)
        model = await manager.get(release.name, content=True, type="notebook")
        content = json.loads(json.dumps(model["content"]))  # as it comes back from the browser
        content["metadata"]["language_info"]["version"] = "3.11.7"
        await manager.save({"type": "notebook", "format": "json", "content": content},
                           release.name)
        return (tmp_path / release.name).read_bytes()

    assert asyncio.run(open_and_save(hook=False)) != release.read_bytes()
    (tmp_path / release.name).write_bytes(release.read_bytes())
    assert asyncio.run(open_and_save(hook=True)) == release.read_bytes()


def test_every_exercise_cell_has_a_banner_naming_what_it_defines():
    banners = {}
    for name in NOTEBOOK_NAMES:
        cells = nbformat.read(RELEASE_DIR / f"{name}.ipynb", as_version=4).cells
        for before, cell in zip(cells, cells[1:]):
            if cell.cell_type == "code" and cell.metadata.get("nbgrader", {}).get("solution"):
                assert before.cell_type == "markdown" and before.id == f"{cell.id}-exercise"
                banners[cell.id] = before.source
    assert len(banners) == 12  # 10 exercises in 01-06, 2 in the bonus 07
    assert banners["lora_layer"] == exercise_banner(["LoRALayer"])
    assert "`freeze_and_activate_lora`" in banners["freeze_and_activate_lora"]
    assert "`replace_linear_with_lora`" not in banners["freeze_and_activate_lora"]


def test_defined_names_and_banner_wording():
    code = "import math\nX: int = 1\nclass A:\n    y = 2\ndef f():\n    z = 3\nA = A\n"
    assert defined_names(code) == ["X", "A", "f"]
    assert "define `a`, `b` and `c`" in exercise_banner(["a", "b", "c"])


def test_carry_error_shows_as_one_line_in_a_kernel_and_in_html(tmp_path):
    """Run All and Validate show the kernel's traceback, feedback renders it as HTML."""
    from nbclient import NotebookClient
    from nbconvert import HTMLExporter

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        'from helpers.carry import from_notebook\nfrom_notebook("02_lora_wrapper", "LinearWithLoRA")')])
    NotebookClient(nb, timeout=120, allow_errors=True,
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    [error] = nb.cells[0].outputs
    assert error.output_type == "error" and error.ename == "CarryForwardError"
    assert error.traceback == [f"CarryForwardError: {error.evalue}"]
    assert "02_lora_wrapper.ipynb not found" in error.evalue
    html, _ = HTMLExporter().from_notebook_node(nb)
    assert "02_lora_wrapper.ipynb not found" in html and "carry.py" not in html
