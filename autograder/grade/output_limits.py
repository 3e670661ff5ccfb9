"""Size limits on what a student's notebook prints while it is graded.

nbgrader's LimitOutput trims outputs to a number of lines once the notebook has run. That
leaves two holes: while a cell runs, every message it prints is kept in the grading process
(a `print` in an endless loop fills gigabytes before the cell times out), and one very long
line or a huge HTML display passes a line limit whole. Two preprocessors close them:

- `ExecuteWithOutputBudget` (replaces nbgrader's Execute): stops recording a cell's output
  once it passes `max_cell_output_chars`, with a note in its place; errors are always kept;
- `CapOutputSize` (runs after LimitOutput): cuts each remaining output to `max_chars`.

This module imports nbgrader: import it only when grading.
"""

from __future__ import annotations

import nbformat
from nbconvert.preprocessors import Preprocessor
from nbgrader.converters.autograde import Autograde
from nbgrader.preprocessors import Execute, LimitOutput
from traitlets import Bool, Integer


def _message_chars(content: dict) -> int:
    if "text" in content:
        return len(content["text"])
    return sum(len(str(value)) for value in content.get("data", {}).values())


class ExecuteWithOutputBudget(Execute):
    """nbgrader's Execute that keeps at most `max_cell_output_chars` of each cell's output."""

    max_cell_output_chars = Integer(10_000_000).tag(config=True)

    last_failure: type[BaseException] | None = None  # what stopped the last notebook, if any

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._chars_by_execution: dict[str, int] = {}  # parent msg id -> characters received

    def preprocess(self, nb, resources=None, km=None):
        """Execute the notebook, remembering the type of the exception that stopped it."""
        type(self).last_failure = None
        try:
            return super().preprocess(nb, resources, km)
        except BaseException as error:
            type(self).last_failure = type(error)
            raise

    def output(self, outs, msg, display_id, cell_index):
        if msg["msg_type"] == "error":
            return super().output(outs, msg, display_id, cell_index)
        execution = msg["parent_header"].get("msg_id", "")
        used = self._chars_by_execution.get(execution, 0)
        budget = self.max_cell_output_chars
        self._chars_by_execution[execution] = used + _message_chars(msg["content"])
        if self._chars_by_execution[execution] <= budget:
            return super().output(outs, msg, display_id, cell_index)
        if used <= budget:  # the message that crossed the budget leaves a note, once (not a
            # stream, which LimitOutput could drop)
            note = f"... output stopped: this cell printed more than {budget:,} characters ..."
            outs.append(nbformat.v4.new_output("display_data", data={"text/plain": note}))
        return None


class CapOutputSize(Preprocessor):
    """Cuts each output of the graded copy to `max_chars` characters."""

    enabled = Bool(True).tag(config=True)  # nbconvert preprocessors are off by default
    max_chars = Integer(1_000_000).tag(config=True)

    def preprocess_cell(self, cell: nbformat.NotebookNode, resources: dict, index: int):
        if cell.cell_type == "code":
            cell.outputs = [self._cap(output) for output in cell.outputs]
        return cell, resources

    def _cap(self, output: nbformat.NotebookNode) -> nbformat.NotebookNode:
        if output.output_type == "stream" and len(output.text) > self.max_chars:
            output.text = (output.text[:self.max_chars]
                           + f"\n... Output truncated ({len(output.text):,} characters) ...\n")
        elif output.output_type in ("display_data", "execute_result"):
            size = _message_chars(output)
            if size > self.max_chars:
                output.data = {"text/plain": f"... Output removed ({size:,} characters) ..."}
                output.metadata = {}
        return output


def autograde_steps() -> list[type]:
    """nbgrader's autograde preprocessors with the two limits above in place."""
    steps = []
    for step in Autograde.class_traits()["autograde_preprocessors"].default():
        if step is Execute:
            steps.append(ExecuteWithOutputBudget)
        else:
            steps.append(step)
            if step is LimitOutput:
                steps.append(CapOutputSize)
    return steps
