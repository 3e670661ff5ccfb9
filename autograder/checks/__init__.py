"""Grader-only checks called by the hidden test cells (one module per notebook).

Each check raises AssertionError with a message that says what is wrong, without giving the
answer away: nbgrader shows these messages in the students' feedback. Importing this package
inside a kernel also trims tracebacks of the checks' own lines (see `_hide_check_frames`), so
the feedback never shows the hidden checks' code, only the student's.
"""

from __future__ import annotations

import traceback
from pathlib import Path

from helpers.carry import CarryForwardError, unfinished_step_error

_CHECKS_DIR = str(Path(__file__).resolve().parent)


def _hide_check_frames(shell, etype, value, tb, tb_offset=None):
    """IPython exception handler: the traceback without frames from this package; an error
    caused by an earlier step that could not be loaded names that step instead."""
    explained = unfinished_step_error(value)
    if explained is not None:
        return shell._showtraceback(CarryForwardError, explained, [f"CarryForwardError: {explained}"])
    frames = [f for f in traceback.extract_tb(tb) if not f.filename.startswith(_CHECKS_DIR)]
    lines = traceback.format_list(frames) if frames else []
    lines += traceback.format_exception_only(etype, value)
    shell._showtraceback(etype, value, ["Traceback (most recent call last):\n", *lines]
                         if frames else lines)


def _install() -> None:
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is not None:
        shell.set_custom_exc((Exception,), _hide_check_frames)


_install()
