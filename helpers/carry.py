"""Reuse your own code from an earlier notebook of the lab.

    from helpers.carry import from_notebook
    LoRALayer = from_notebook("01_lora_layer", "LoRALayer")

runs the exercise cells of `01_lora_layer.ipynb` (the cells nbgrader marks as solution cells,
plus cells tagged `carry`, which re-import what those need) in a fresh module and hands back
the names asked for. The notebook is read as last saved, from the folder of the running
notebook. A name whose exercise cell still holds the release's `raise NotImplementedError()`
is refused with a message naming that exercise: do that step first. The autograder sets
`LORA_LAB_CARRY_DIR` to the reference notebooks so that each step is graded on a correct
base: a mistake in step 1 only costs points in step 1.

Once a load failed in a kernel, every later error there (a test cell of this notebook under
Validate or autograde, say) is shown as a CarryForwardError saying which step to finish first,
not as the NameError or wrong count it causes, until that load succeeds.
"""

from __future__ import annotations

import json
import os
import sys
import types
from pathlib import Path

CARRY_DIR_VAR = "LORA_LAB_CARRY_DIR"
CARRY_TAG = "carry"
STUB_MARK = "# YOUR CODE HERE"
STUB_RAISE = "raise NotImplementedError()"

_cache: dict[tuple[str, int, int], types.ModuleType] = {}
_unfinished_steps: dict[str, str] = {}  # notebook -> why its code could not be loaded (this kernel)


class CarryForwardError(RuntimeError):
    """Code from an earlier notebook could not be loaded; the message says what to do."""

    def _render_traceback_(self) -> list[str]:
        """IPython shows this instead of a traceback: the message is all a student needs."""
        return [f"{type(self).__name__}: {self}"]


def notebook_path(name: str) -> Path:
    """Where the earlier notebook `name` (e.g. '01_lora_layer') is read from."""
    folder = Path(os.environ.get(CARRY_DIR_VAR) or Path.cwd())
    path = folder / (name if name.endswith(".ipynb") else f"{name}.ipynb")
    if not path.is_file():
        raise CarryForwardError(
            f"{path.name} not found in {folder}. Keep the lab's notebooks together in one folder "
            f"and start Jupyter so that this notebook runs from it (or set {CARRY_DIR_VAR})."
        )
    return path


_ABSENT = object()


def _is_unfinished(source: str) -> bool:
    """Whether an exercise cell still holds the release's placeholder."""
    return STUB_MARK in source and STUB_RAISE in source


def _carried_cells(path: Path) -> list[tuple[str, str]]:
    """(label, source) of each carried code cell of the notebook at `path`.

    Read as plain JSON (the notebook format, version 4): importing nbformat in every kernel
    would cost seconds (its schema validator) for a file that needs no validating here.
    """
    try:
        nb = json.loads(path.read_text(encoding="utf-8"))
        if nb.get("nbformat") != 4:
            raise ValueError(f"notebook format {nb.get('nbformat')}, not 4")
        cells = [c for c in nb["cells"] if c["cell_type"] == "code"]
        carried = []
        for cell in cells:
            metadata = cell.get("metadata", {})
            grading = metadata.get("nbgrader", {})
            if grading.get("solution") or CARRY_TAG in metadata.get("tags", []):
                source = cell["source"]
                label = grading.get("grade_id") or f"carry cell {len(carried) + 1}"
                carried.append((label, source if isinstance(source, str) else "".join(source)))
        return carried
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise CarryForwardError(f"{path.name} cannot be read as a notebook ({exc}).") from None


def load_notebook_module(name: str) -> types.ModuleType:
    """Run the exercise cells of notebook `name` once per saved version; returns the module."""
    path = notebook_path(name)
    stat = path.stat()
    key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size)
    if key in _cache:
        return _cache[key]
    cells = _carried_cells(path)
    if not cells:
        raise CarryForwardError(
            f"{path.name} has no exercise cells (their metadata may have been removed). "
            "Copy your code into a fresh copy of the released notebook."
        )
    module = types.ModuleType(f"lab_{path.stem}", f"Exercise cells of {path.name}")
    module.__file__ = str(path)
    module.__unfinished__ = {}  # name -> label of the exercise cell, still a stub, defining it
    sys.modules[module.__name__] = module  # so classes defined there pickle and introspect
    for label, source in cells:
        before = dict(vars(module)) if _is_unfinished(source) else None
        try:
            code = compile(source, f"{path.name} [{label}]", "exec")
            exec(code, module.__dict__)
            if before is not None:  # the names this stub cell defined
                module.__unfinished__.update({name: label for name, value in vars(module).items()
                                              if before.get(name, _ABSENT) is not value})
        except CarryForwardError:
            raise
        except Exception as exc:
            hint = (" If a module is missing, put its import inside that exercise cell."
                    if isinstance(exc, NameError) else "")
            raise CarryForwardError(
                f"Running cell '{label}' of {path.name} failed with {type(exc).__name__}: {exc}. "
                f"Fix it in {path.name}, save that notebook, then re-run this cell.{hint}"
            ) from exc
    _cache[key] = module
    return module


def _step_of(name: str) -> str:
    number = Path(name).stem.split("_")[0]
    return f"step {int(number)}" if number.isdigit() else Path(name).stem


def unfinished_step_error(error: BaseException) -> CarryForwardError | None:
    """`error` explained by an earlier step that could not be loaded in this kernel, if any."""
    if not _unfinished_steps or isinstance(error, CarryForwardError):
        return None
    return CarryForwardError(f"{next(iter(_unfinished_steps.values()))} (This cell then failed "
                             f"with {type(error).__name__}: {error}.)")


def _show_unfinished_step(shell, etype, value, tb, tb_offset=None):
    """IPython exception handler: later errors name the unfinished step (one line)."""
    if isinstance(value, CarryForwardError):  # IPython's own display: its one-line traceback
        return shell.showtraceback((etype, value, tb), tb_offset=tb_offset)
    explained = unfinished_step_error(value)
    if explained is None:
        stb = shell.InteractiveTB.structured_traceback(etype, value, tb, tb_offset=tb_offset)
        return shell._showtraceback(etype, value, stb)
    return shell._showtraceback(CarryForwardError, explained, [f"CarryForwardError: {explained}"])


def _explain_later_errors() -> None:
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is not None and not shell.custom_exceptions:  # the grader's checks handle it too
        shell.set_custom_exc((Exception,), _show_unfinished_step)


def from_notebook(name: str, *names: str):
    """The objects `names` defined by the exercise cells of notebook `name`.

    One name gives the object itself, several give a tuple in the same order.
    """
    try:
        found = _load_names(name, names)
    except CarryForwardError as error:
        _unfinished_steps[name] = f"Finish {_step_of(name)} first: {error}"
        _explain_later_errors()
        raise CarryForwardError(_unfinished_steps[name]) from None
    _unfinished_steps.pop(name, None)
    return found[0] if len(found) == 1 else found


def _load_names(name: str, names: tuple[str, ...]) -> tuple:
    module = load_notebook_module(name)
    missing = [n for n in names if not hasattr(module, n)]
    if missing:
        raise CarryForwardError(
            f"{Path(module.__file__).name} does not define {', '.join(missing)}: keep the names "
            "the exercise asks for, save that notebook, then re-run this cell."
        )
    unfinished = {module.__unfinished__[n] for n in names if n in module.__unfinished__}
    if unfinished:
        exercises = ", ".join(f"'{label}'" for label in sorted(unfinished))
        raise CarryForwardError(
            f"{Path(module.__file__).name} is not finished: exercise {exercises} still has its "
            f"placeholder `{STUB_RAISE}`. Do that step first, save "
            f"{Path(module.__file__).name}, then re-run this cell."
        )
    return tuple(getattr(module, n) for n in names)
