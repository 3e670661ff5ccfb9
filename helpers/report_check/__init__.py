"""Checking a student's rapport.md against the template and the student's own notebook outputs.

`check_report(folder)` reads FOLDER/rapport.md, the template (`rapport_template.md` at the
repository root), the images the report links and the six executed notebooks (FOLDER/NN_*.ipynb,
or FOLDER/notebooks/NN_*.ipynb in a clone of the course pack). It informs the grader and the
student; it awards no points. `python -m helpers.report_check PATH` (or, for instructors,
`python -m autograder check-report PATH`) prints what to fix and exits 0 when there is no
finding at all, 1 when there is any, 2 when PATH is not a folder.

One module per concern: `findings` (the kinds of finding), `sections` (the report's sections
and answers), `images`, `numbers` (the number grammar), `outputs` (reading the notebooks),
`facts` (what the outputs and the saved training history imply), `matching` (quoted numbers
against those facts), `check`, `render` and `cli`.
"""

from helpers.report_check.check import (GPT2_SIZES, NUMBER_SECTIONS, TEMPLATE_PATH, ReportCheck,
                                        check_report)
from helpers.report_check.cli import main
from helpers.report_check.findings import (HEADER, IMAGE, MISSING_REPORT, MISSING_SECTION,
                                           NO_ANSWER, NOTEBOOK, NUMBER, REPORT_NAME,
                                           TEMPLATE_TEXT, Derived, Finding)

__all__ = ["GPT2_SIZES", "HEADER", "IMAGE", "MISSING_REPORT", "MISSING_SECTION", "NO_ANSWER",
           "NOTEBOOK", "NUMBER", "NUMBER_SECTIONS", "REPORT_NAME", "TEMPLATE_PATH",
           "TEMPLATE_TEXT", "Derived", "Finding", "ReportCheck", "check_report", "main"]
