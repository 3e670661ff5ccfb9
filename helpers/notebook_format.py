"""The lab's notebook file format: what JupyterLab writes, so that an unchanged save changes nothing.

JupyterLab saves through Jupyter Server, which writes `nbformat.writes(nb)` (indent 1, sorted
keys, every source as a list of lines) and the running kernel's `kernelspec` and
`language_info`. Of those, only `language_info.version` (the Python version) differs from one
machine to the next, so the release carries the rest, and the student's Jupyter server saves
without the version: this module is also a Jupyter server extension, enabled by
`student_jupyter/`, that installs `drop_python_version` as a pre-save hook. Opening a release
notebook and saving it unchanged then leaves the file byte-identical.
"""

from __future__ import annotations

from typing import Any

import nbformat

KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
LANGUAGE_INFO = {  # ipykernel's language_info, less the Python version
    "codemirror_mode": {"name": "ipython", "version": 3},
    "file_extension": ".py",
    "mimetype": "text/x-python",
    "name": "python",
    "nbconvert_exporter": "python",
    "pygments_lexer": "ipython3",
}


def set_lab_metadata(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Give `nb` the kernelspec and language_info JupyterLab keeps for a Python 3 kernel."""
    nb.metadata["kernelspec"] = dict(KERNELSPEC)
    nb.metadata["language_info"] = {**LANGUAGE_INFO,
                                    "codemirror_mode": dict(LANGUAGE_INFO["codemirror_mode"])}
    return nb


def notebook_text(nb: nbformat.NotebookNode) -> str:
    """The file contents Jupyter Server writes for `nb`."""
    return nbformat.writes(nb) + "\n"


def drop_python_version(model: dict[str, Any], **_: Any) -> None:
    """Jupyter Server pre-save hook: save notebooks without the kernel's Python version."""
    if model.get("type") == "notebook" and isinstance(model.get("content"), dict):
        model["content"].get("metadata", {}).get("language_info", {}).pop("version", None)


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": __name__}]


def _load_jupyter_server_extension(serverapp: Any) -> None:
    serverapp.contents_manager.register_pre_save_hook(drop_python_version)
